"""Port and SSH-style sessions are recorded by the server: connections, destination, bytes, timings."""

from __future__ import annotations

import json
import pathlib
import socket
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import pexpect
import pytest
from tests.e2e.harness import Server, openssm_argv, running_system, wait_until
from tests.support.net import free_port

pytestmark = pytest.mark.slow


class EchoServer:
    """TCP echo on loopback; counts connections."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    yield server
    server.close()


def _events(server: Server, session_id: str) -> list[dict[str, Any]]:
    path = server.data_dir / "sessions" / f"{session_id}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _wait_ended(server: Server, session_id: str) -> list[dict[str, Any]]:
    wait_until(
        lambda: any(e["event"] == "session_ended" for e in _events(server, session_id)),
        "session record ended",
    )
    return _events(server, session_id)


def _exchange(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(payload)
        received = b""
        while len(received) < len(payload):
            chunk = conn.recv(65536)
            if not chunk:
                break
            received += chunk
    return received


def test_port_forwarding_connections_are_recorded(tmp_path: pathlib.Path, echo: EchoServer) -> None:
    with running_system(tmp_path) as (server, agent):
        local_port = free_port()
        assert agent.instance_id
        argv = openssm_argv(
            "start-session",
            "--target",
            agent.instance_id,
            "--endpoint-url",
            server.endpoint,
            "--document-name",
            "AWS-StartPortForwardingSession",
            "--parameters",
            json.dumps({"portNumber": [str(echo.port)], "localPortNumber": [str(local_port)]}),
        )
        child = pexpect.spawn(argv[0], argv[1:], env=server.aws_env(), timeout=30, encoding="utf-8")
        child.expect(r"Starting session with SessionId: (\S+)")
        session_id = child.match.group(1).strip().rstrip(".")
        child.expect(f"Port {local_port} opened")
        first, second = b"a" * 70_000, b"hello-second"
        assert _exchange(local_port, first) == first
        assert _exchange(local_port, second) == second
        wait_until(
            lambda: sum(e["event"] == "connection_closed" for e in _events(server, session_id)) == 2,
            "both connections recorded as closed",
        )
        server.client("ssm").terminate_session(SessionId=session_id)
        child.expect(pexpect.EOF)
        events = _wait_ended(server, session_id)

    started = events[0]
    assert started["event"] == "session_started" and started["document"] == "AWS-StartPortForwardingSession"
    opened = [e for e in events if e["event"] == "connection_opened"]
    closed = [e for e in events if e["event"] == "connection_closed"]
    assert [e["destination"] for e in opened] == [f"localhost:{echo.port}"] * 2
    assert [(e["bytes_to_destination"], e["bytes_from_destination"]) for e in closed] == [
        (len(first), len(first)),
        (len(second), len(second)),
    ]
    assert all(e["duration"] >= 0 and e["how"] == "closed" for e in closed)
    summary = next(e for e in events if e["event"] == "summary")
    assert summary["mode"] == "mux" and summary["connections"] == 2
    assert events[-1]["event"] == "session_ended"
    log = (server.data_dir / "sessions" / f"{session_id}.log").read_text()
    assert f"connection 3 opened to localhost:{echo.port}" in log
    assert f"{len(first)} bytes to destination" in log
    assert not (server.data_dir / "sessions" / f"{session_id}.cast").exists()


def test_ssh_style_stdio_session_is_recorded(tmp_path: pathlib.Path, echo: EchoServer) -> None:
    with running_system(tmp_path) as (server, agent):
        assert agent.instance_id
        argv = openssm_argv(
            "start-session",
            "--target",
            agent.instance_id,
            "--endpoint-url",
            server.endpoint,
            "--document-name",
            "AWS-StartSSHSession",
            "--parameters",
            f"portNumber={echo.port}",
        )
        proc = subprocess.Popen(
            argv, env=server.aws_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        assert proc.stdin is not None and proc.stdout is not None
        received = bytearray()

        def read() -> None:
            assert proc.stdout is not None
            while chunk := proc.stdout.read1(65536):  # type: ignore[attr-defined]
                received.extend(chunk)

        threading.Thread(target=read, daemon=True).start()
        proc.stdin.write(b"ssh-like-bytes\n")
        proc.stdin.flush()
        # The destination's answer comes back on stdout (after the client's own banner lines).
        wait_until(lambda: b"ssh-like-bytes\n" in received, "echo through the stdio session")
        proc.stdin.close()
        proc.wait(timeout=30)
        wait_until(
            lambda: bool(server.client("ssm").describe_sessions(State="History")["Sessions"]), "history"
        )
        sessions = server.client("ssm").describe_sessions(State="History")["Sessions"]
        session_id = sessions[0]["SessionId"]
        events = _wait_ended(server, session_id)
    summary = next(e for e in events if e["event"] == "summary")
    assert summary["mode"] == "basic" and summary["destination"] == f"localhost:{echo.port}"
    assert summary["bytes_to_destination"] == 15 and summary["bytes_from_destination"] == 15
    assert summary["connections"] == 1
