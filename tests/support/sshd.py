"""A throw-away OpenSSH server on a high loopback port, for SSH/SCP tests and benchmarks."""

from __future__ import annotations

import contextlib
import dataclasses
import getpass
import os
import pathlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

from tests.support.net import free_port

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def sshd_available() -> bool:
    return os.path.exists(SSHD) and shutil.which("ssh") is not None and shutil.which("ssh-keygen") is not None


@dataclasses.dataclass(frozen=True)
class SshServer:
    port: int
    user: str
    client_key: pathlib.Path

    def ssh_argv(self, *extra: str) -> list[str]:
        return ["ssh", *self.client_options("-p"), *extra]

    def client_options(self, port_flag: str) -> list[str]:
        """Options for ssh (``-p``) or scp (``-P``) to log in here with the test key, unprompted."""
        return [
            "-i",
            str(self.client_key),
            port_flag,
            str(self.port),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "BatchMode=yes",
        ]


@contextlib.contextmanager
def run_sshd(workdir: pathlib.Path, *, use_pam: bool = False) -> Iterator[SshServer]:
    """Start sshd with a fresh host key and one authorised test key for the current user (any user
    with ``use_pam``: without PAM, sshd refuses accounts whose password is locked)."""
    workdir.mkdir(parents=True, exist_ok=True)
    os.chmod(workdir, 0o700)
    host_key = workdir / "host_ed25519"
    client_key = workdir / "client_ed25519"
    for key in (host_key, client_key):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    authorized = workdir / "authorized_keys"
    authorized.write_text((workdir / "client_ed25519.pub").read_text())
    os.chmod(authorized, 0o600)
    port = free_port()
    config = workdir / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {host_key}",
                f"AuthorizedKeysFile {authorized}",
                f"PidFile {workdir / 'sshd.pid'}",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PubkeyAuthentication yes",
                "PermitRootLogin prohibit-password",
                "UsePAM yes" if use_pam else "UsePAM no",
                "StrictModes no",
                "Subsystem sftp internal-sftp",
                "",
            ]
        )
    )
    pathlib.Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # privilege separation directory
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            if proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {proc.stderr.read().decode() if proc.stderr else ''}")
            time.sleep(0.05)
        yield SshServer(port=port, user=getpass.getuser(), client_key=client_key)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
