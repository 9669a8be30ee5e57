"""Sessions survive a restart of the server: real `openssm server` (SQLite), `openssm agent` and
`openssm start-session` processes; the server is stopped with SIGTERM or SIGKILL while a shell prints
numbered lines and a port session moves 256 MiB each way, and started again at once on the same
data directory and port. Both sessions go on: every byte arrives once (SHA-256 at both ends, printed),
the shell's recording on the server holds every line once, and the sessions stay Connected.

The server runs with a short resume window (``--session-resume-window``), which bounds the last
test: an end that is not back within the window finds the session ended, with a clear status in
describe-sessions and a clear line on the client, which exits by itself.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import json
import os
import pathlib
import re
import signal
import time
from collections.abc import Iterator

import pytest

from tests.e2e.forwarding import ChecksumServer, reported_transfer, session_process
from tests.e2e.harness import Agent, Server, openssm_argv, port_forwarding_argv, wait_until
from tests.e2e.test_faults_kill import wait_status
from tests.e2e.test_faults_shell import Terminal

pytestmark = pytest.mark.slow

MIB = 1 << 20
TRANSFER = 256 * MIB  # each way
LINES = 4000
LINE = re.compile(r"L(\d{5})E")
RESUME_WINDOW = 25.0  # the server's --session-resume-window in these tests
SIGNALS = {"SIGTERM": signal.SIGTERM, "SIGKILL": signal.SIGKILL}


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Agent, ChecksumServer]]:
    tmp = tmp_path_factory.mktemp("faults-restart")
    server = Server(tmp / "server", extra_args=("--session-resume-window", str(RESUME_WINDOW))).start()
    agent = Agent(server, tmp / "agent")
    try:
        with ChecksumServer() as destination:
            agent.register()
            agent.start()
            yield server, agent, destination
    finally:
        agent.stop()
        server.stop()


def restart(server: Server, sig: signal.Signals) -> float:
    """Stop the server with ``sig`` and start it again at once; returns the seconds from the signal
    to the server listening again."""
    assert server.process is not None
    stopped_at = time.monotonic()
    server.process.stop(sig, timeout=30)
    server.start()
    return time.monotonic() - stopped_at


def recorded_lines(server: Server, session_id: str) -> list[int]:
    transcript = server.data_dir / "sessions" / f"{session_id}.log"
    return [int(number) for number in LINE.findall(transcript.read_text(errors="replace"))]


def shell(server: Server, agent: Agent) -> tuple[Terminal, str]:
    assert agent.instance_id
    argv = openssm_argv("start-session", "--target", agent.instance_id, "--endpoint-url", server.endpoint)
    terminal = Terminal(argv, server.aws_env())
    session_id = terminal.wait_for(r"Starting session with SessionId: (\S+?)\.?\s").group(1)
    terminal.child.sendline("stty -echo; echo READY-$((6*7))")
    terminal.wait_for("READY-42")
    return terminal, session_id


@pytest.mark.timeout(300)
@pytest.mark.parametrize("how", list(SIGNALS))
def test_sessions_survive_a_server_restart(system: tuple[Server, Agent, ChecksumServer], how: str) -> None:
    server, agent, destination = system
    assert agent.instance_id
    terminal, shell_id = shell(server, agent)
    argv = port_forwarding_argv(server, agent.instance_id, destination.port)
    try:
        with (
            session_process(argv, server.aws_env()) as port,
            concurrent.futures.ThreadPoolExecutor(1) as pool,
        ):
            (local,) = port.local_ports()
            (port_id,) = port.session_ids()
            port.wait_for(r"Waiting for connections\.\.\.")
            terminal.child.sendline(
                f"p=$(mktemp); (for i in $(seq 1 {LINES}); do printf 'L%05dE\\n' $i; sleep 0.004; done) | tee $p;"
                " echo NODE-SHA256 $(sha256sum < $p) NODE-BYTES $(wc -c < $p); rm -f $p"
            )
            terminal.wait_for("L00300E")
            # The transfer starts once the shell is going, and the restart comes as soon as 16 MiB are
            # through: on a quiet machine the whole 256 MiB takes only a few seconds.
            received_before = destination.received
            transfer = pool.submit(reported_transfer, local, upload=TRANSFER, download=TRANSFER, timeout=120)
            wait_until(
                lambda: destination.received - received_before >= 16 * MIB,
                "16 MiB to reach the node",
                interval=0.01,
            )
            assert not transfer.done()
            assert not re.search(f"L{LINES:05d}E", terminal.text), "the shell finished before the restart"
            outage = restart(server, SIGNALS[how])
            report = transfer.result(240)
            node = terminal.wait_for(r"NODE-SHA256 ([0-9a-f]{64}) - NODE-BYTES (\d+)", timeout=120)
            text = terminal.text
            for session_id in (shell_id, port_id):
                assert (server.session_record(session_id) or {}).get("Status") == "Connected"
            port.stop()
        terminal.child.sendline("exit")
        terminal.wait_for(r"Exiting session with sessionId")
    finally:
        terminal.close()
    wait_status(server, shell_id, "Terminated", timeout=30)
    numbers = [int(found) for found in LINE.findall(text)]
    received = "".join(f"L{number:05d}E\n" for number in numbers).encode()
    recorded = recorded_lines(server, shell_id)
    print(f"server {how}ed and back listening after {outage:.1f} s")
    print(report.describe(f"port session across the {how} restart"))
    print(
        f"shell: the node printed {node.group(2)} bytes, sha256 {node.group(1)[:16]}…; the client received"
        f" {len(numbers)} lines, {len(received)} bytes, sha256 {hashlib.sha256(received).hexdigest()[:16]}…;"
        f" the server's recording holds {len(recorded)} numbered lines"
    )
    assert report.client_sent == report.server_received and report.server_sent == report.client_received
    assert numbers == list(range(1, LINES + 1)), "lines lost, duplicated or reordered on the client"
    assert hashlib.sha256(received).hexdigest() == node.group(1)
    assert len(received) == int(node.group(2))
    assert recorded == list(range(1, LINES + 1)), "the recording lost or repeated lines"
    events = [json.loads(line) for line in (server.data_dir / "sessions" / f"{port_id}.jsonl").open()]
    assert [e["event"] for e in events if e["event"] in ("session_started", "session_resumed")] == [
        "session_started",
        "session_resumed",
    ]
    summary = next(e for e in events if e["event"] == "summary")
    print(f"port recording summary: {summary}")
    # Each byte once: the smux headers add well under 1 %, a resent stretch would add far more.
    assert TRANSFER <= summary["bytes_to_destination"] < TRANSFER * 1.01


@pytest.mark.timeout(300)
def test_client_back_after_the_resume_window(system: tuple[Server, Agent, ChecksumServer]) -> None:
    """The server restarts while the client is stopped (SIGSTOP) for longer than the resume window:
    the agent comes back, the client does not, so the session ends (describe-sessions: Terminated,
    "Session resume window expired") and the node's shell with it; the client, continued, says the
    session is over and exits by itself."""
    server, agent, _ = system
    terminal, session_id = shell(server, agent)
    try:
        terminal.child.sendline("echo SHELL-PID-$$")
        shell_pid = int(terminal.wait_for(r"SHELL-PID-(\d+)").group(1))
        os.kill(terminal.child.pid, signal.SIGSTOP)
        restart(server, signal.SIGKILL)
        stopped_at = time.monotonic()
        ended = wait_status(server, session_id, "Terminated", timeout=RESUME_WINDOW + 60)
        ended_after = time.monotonic() - stopped_at
        wait_until(
            lambda: not pathlib.Path(f"/proc/{shell_pid}").exists(), "the node's shell to end", timeout=30
        )
        os.kill(terminal.child.pid, signal.SIGCONT)
        said = terminal.wait_for(r"(?i)no longer active[^\n]*", timeout=120).group(0)
        wait_until(lambda: not terminal.child.isalive(), "the client to exit", timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(terminal.child.pid, signal.SIGCONT)
        terminal.close()
    print(f"session {ended['Status']} ({ended.get('Details')!r}) {ended_after:.1f} s after the restart;")
    print(f"the client, continued, said: {said.strip()!r} and exited")
    assert ended.get("Details") == "Session resume window expired"
