"""SIGKILL of one end mid-session, with real `openssm server`, `openssm agent` and `openssm
start-session` processes: the other end and the server end the session with a clear status in
describe-sessions, and nothing hangs."""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import pathlib
import signal
import time
from typing import Any

import pytest

from tests.e2e.forwarding import ChecksumServer, TransferError, reported_transfer, session_process
from tests.e2e.harness import Server, openssm_argv, port_forwarding_argv, running_system, wait_until
from tests.e2e.test_faults_shell import Terminal

pytestmark = pytest.mark.slow

MIB = 1 << 20
RESUME_WINDOW = 20.0  # the server's --session-resume-window: how long a session waits for its client


def wait_status(server: Server, session_id: str, status: str, timeout: float) -> dict[str, Any]:
    found: dict[str, Any] = {}

    def reached() -> bool:
        row = server.session_record(session_id)
        if row is not None and row["Status"] == status:
            found.update(row)
            return True
        return False

    wait_until(reached, f"session {session_id} {status}", timeout=timeout, interval=0.5)
    return found


@pytest.mark.timeout(120)
def test_agent_killed_mid_transfer(tmp_path: pathlib.Path) -> None:
    """The client says why and exits; the server records the session Terminated."""
    with running_system(tmp_path) as (server, agent), ChecksumServer() as destination:
        assert agent.instance_id and agent.process
        argv = port_forwarding_argv(server, agent.instance_id, destination.port)
        with (
            session_process(argv, server.aws_env()) as session,
            concurrent.futures.ThreadPoolExecutor(1) as pool,
        ):
            (local,) = session.local_ports()
            (session_id,) = session.session_ids()
            transfer = pool.submit(reported_transfer, local, upload=1 << 40, download=1 << 40, timeout=60)
            # The agent has dialled the destination: bytes flow, and the transfer is endless.
            wait_until(lambda: destination.connections == 1, "the agent to reach the destination")
            assert not transfer.done()
            killed_at = time.monotonic()
            os.killpg(agent.process.proc.pid, signal.SIGKILL)
            code = session.wait_exit(timeout=60)  # no hang: the client ends by itself
            exited_after = time.monotonic() - killed_at
            with pytest.raises((TransferError, OSError)):
                transfer.result(60)
            row = wait_status(server, session_id, "Terminated", timeout=30)
        print(
            f"agent SIGKILLed: client exited with {code} after {exited_after:.1f} s; session"
            f" {row['Status']} ({row.get('Details', '')!r}); client said: {session.output.strip().splitlines()[-2:]}"
        )
        assert "Agent closed the data channel" in session.output
        # As AWS's plugin does for a channel_closed with a reason: "SessionId: <id> : <reason>".
        assert f"SessionId: {session_id} : Agent closed the data channel" in session.output
        assert row.get("Details") == "Agent closed the data channel"


@pytest.mark.timeout(RESUME_WINDOW + 120)
def test_client_killed_mid_shell(tmp_path: pathlib.Path) -> None:
    """Disconnected at once; after the resume window, Terminated, and the node's shell is gone."""
    with running_system(tmp_path, ("--session-resume-window", str(RESUME_WINDOW))) as (server, agent):
        assert agent.instance_id and agent.process
        argv = openssm_argv("start-session", "--target", agent.instance_id, "--endpoint-url", server.endpoint)
        terminal = Terminal(argv, server.aws_env())
        try:
            session_id = terminal.wait_for(r"Starting session with SessionId: (\S+?)\.?\s").group(1)
            terminal.child.sendline("echo SHELL-PID-$$")
            shell_pid = int(terminal.wait_for(r"SHELL-PID-(\d+)").group(1))
            terminal.child.sendline("while :; do echo tick; sleep 0.05; done")
            terminal.wait_for("tick")
            killed_at = time.monotonic()
            os.kill(terminal.child.pid, signal.SIGKILL)
            disconnected = wait_status(server, session_id, "Disconnected", timeout=30)
            disconnected_after = time.monotonic() - killed_at
            assert os.path.exists(f"/proc/{shell_pid}"), "the node's shell must wait for the client"
            ended = wait_status(server, session_id, "Terminated", timeout=RESUME_WINDOW + 60)
            ended_after = time.monotonic() - killed_at
            wait_until(
                lambda: not os.path.exists(f"/proc/{shell_pid}"), "the node's shell to end", timeout=30
            )
            assert agent.process.alive()
            assert ended.get("Details") == "Session resume window expired"
        finally:
            terminal.close()
        print(
            f"client SIGKILLed: session {disconnected['Status']} after {disconnected_after:.1f} s,"
            f" {ended['Status']} ({ended.get('Details', '')!r}) after {ended_after:.1f} s; the node's"
            " shell ended; the agent runs on"
        )
        with contextlib.suppress(ProcessLookupError):
            os.kill(shell_pid, 0)
            pytest.fail("the node's shell outlived its session")
