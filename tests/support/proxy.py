"""A throw-away HTTP proxy (Debian's tinyproxy, installed by scripts/install-system-deps) on a high
loopback port: CONNECT tunnels and plain forwarding, optionally with Basic authentication."""

from __future__ import annotations

import contextlib
import dataclasses
import pathlib
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

from tests.support.net import free_port

TINYPROXY = shutil.which("tinyproxy") or "/usr/bin/tinyproxy"
_REQUEST = re.compile(r"Request \(file descriptor \d+\): (\S+ \S+)")


def tinyproxy_available() -> bool:
    return pathlib.Path(TINYPROXY).exists()


@dataclasses.dataclass(frozen=True)
class HttpProxy:
    port: int
    log_path: pathlib.Path
    credentials: tuple[str, str] | None

    @property
    def url(self) -> str:
        auth = f"{self.credentials[0]}:{self.credentials[1]}@" if self.credentials else ""
        return f"http://{auth}127.0.0.1:{self.port}"

    def requests(self) -> list[str]:
        """What the proxy was asked, in order (``CONNECT host:port``, ``POST http://...``)."""
        return _REQUEST.findall(self.log_path.read_text(errors="replace"))


@contextlib.contextmanager
def run_tinyproxy(workdir: pathlib.Path, credentials: tuple[str, str] | None = None) -> Iterator[HttpProxy]:
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = workdir / "tinyproxy.conf"
    lines = [
        f"Port {port}",
        "Listen 127.0.0.1",
        "Timeout 60",
        "LogLevel Connect",
        "MaxClients 50",
        "Allow 127.0.0.1",
        "DisableViaHeader Yes",
    ]  # no ConnectPort line: CONNECT to any port (tests use high ones)
    if credentials:
        lines.append(f"BasicAuth {credentials[0]} {credentials[1]}")
    config.write_text("\n".join(lines) + "\n")
    log_path = workdir / "tinyproxy.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([TINYPROXY, "-d", "-c", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"tinyproxy did not start: {log_path.read_text(errors='replace')}")
            time.sleep(0.05)
        yield HttpProxy(port, log_path, credentials)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
