"""A shell session through real network faults: while the remote shell prints 3,000 numbered
lines, two RSTs and a 10 s black-hole of the client's data channel, or of the agent's (fault proxy,
tests/support/faultproxy.py), with real `openssm server`, `openssm agent` and `openssm
start-session` (in a pseudo-terminal) processes. Every line must arrive once, in order; the node
hashes what it printed, the client what it received."""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Iterator
from typing import Literal

import pexpect
import pytest

from tests.e2e.harness import ProxiedSystem, openssm_argv, proxied_system

pytestmark = pytest.mark.slow

LINES = 3000
DATA = "/v1/data-channel/"
LINE = re.compile(r"L(\d{5})E")
Path = Literal["client", "agent"]


def assert_every_line_once(text: str, node: re.Match[str], lines: int, label: str) -> None:
    """The terminal's ``text`` holds lines 1..``lines`` once each, in order, hashing as the node's
    ``NODE-SHA256 … NODE-BYTES …`` line (``node``) says; prints both sides."""
    numbers = [int(found) for found in LINE.findall(text)]
    received = "".join(f"L{number:05d}E\n" for number in numbers).encode()
    print(
        f"{label}: the node printed {node.group(2)} bytes, sha256 {node.group(1)[:16]}…; the client"
        f" received {len(numbers)} lines, {len(received)} bytes, sha256"
        f" {hashlib.sha256(received).hexdigest()[:16]}…"
    )
    assert numbers == list(range(1, lines + 1)), "lines lost, duplicated or reordered"
    assert hashlib.sha256(received).hexdigest() == node.group(1)
    assert len(received) == int(node.group(2))


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxiedSystem]:
    with proxied_system(tmp_path_factory.mktemp("faults-shell")) as running:
        yield running


class Terminal:
    """`openssm start-session` in a pseudo-terminal, its output read by a thread of its own."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.child = pexpect.spawn(argv[0], argv[1:], env=env, dimensions=(24, 200), encoding="utf-8")
        self._text: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = self.child.read_nonblocking(65536, timeout=0.5)
            except pexpect.TIMEOUT:
                continue
            except (pexpect.EOF, OSError):
                break
            with self._changed:
                self._text.append(chunk)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def text(self) -> str:
        with self._changed:
            return "".join(self._text)

    def wait_for(self, pattern: str, timeout: float = 60.0) -> re.Match[str]:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = regex.search("".join(self._text))
                if found:
                    return found
                left = deadline - time.monotonic()
                if left <= 0 or not self._reader.is_alive():
                    raise AssertionError(
                        f"no {pattern!r} in the terminal after {timeout} s:\n{''.join(self._text)[-3000:]}"
                    )
                self._changed.wait(min(left, 0.5))

    def close(self) -> None:
        if self.child.isalive():
            self.child.terminate(force=True)
        self._reader.join(5)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("path", ["client", "agent"])
def test_shell_output_survives_resets_and_a_blackhole(system: ProxiedSystem, path: Path) -> None:
    proxy = system.client_path if path == "client" else system.agent_path
    assert system.agent.instance_id
    argv = openssm_argv(
        "start-session", "--target", system.agent.instance_id, "--endpoint-url", system.server.endpoint
    )
    terminal = Terminal(argv, system.server.aws_env())
    recoveries: list[tuple[str, float]] = []
    try:
        terminal.wait_for(r"Starting session with SessionId: (\S+)")
        terminal.child.sendline("stty -echo; echo READY-$((6*7))")
        terminal.wait_for("READY-42")
        # The file is the shell's own (mktemp): the shell runs as the node's session account
        # (ssm-user by default, not root), which cannot write into pytest's root-only directories.
        terminal.child.sendline(
            f"p=$(mktemp); (for i in $(seq 1 {LINES}); do printf 'L%05dE\\n' $i; sleep 0.002; done) | tee $p;"
            " echo NODE-SHA256 $(sha256sum < $p) NODE-BYTES $(wc -c < $p); rm -f $p"
        )
        for at, fault in ((500, "RST 1"), (1000, "RST 2"), (1500, "a 10 s black-hole")):
            terminal.wait_for(f"L{at:05d}E")
            assert not re.search(f"L{LINES:05d}E", terminal.text), "the shell finished before the fault"
            newest = proxy.last_link_id()
            if fault.startswith("RST"):
                assert proxy.reset(DATA) >= 1
                since = time.monotonic()
            else:
                assert proxy.blackhole(10.0, DATA if path == "client" else None) >= 1
                since = proxy.wait_restored(40)
                newest = 0  # the same connections carry on
            proxy.wait_moved(1024, timeout=30, match=DATA, after=newest)
            recoveries.append((fault, time.monotonic() - since))
        node = terminal.wait_for(r"NODE-SHA256 ([0-9a-f]{64}) - NODE-BYTES (\d+)", timeout=120)
        text = terminal.text
        terminal.child.sendline("exit")
        terminal.wait_for(r"Exiting session with sessionId")
    finally:
        terminal.close()

    for fault, seconds in recoveries:
        print(f"{path} path: output moved again {seconds:.2f} s after {fault}")
    assert_every_line_once(text, node, LINES, f"{path} path")
