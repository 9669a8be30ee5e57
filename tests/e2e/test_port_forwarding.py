"""Port forwarding end to end: real server, real OpenSSM agent, the AWS CLI and `openssm start-session`.

Destinations are real programs on loopback: a checksum server (tests/e2e/forwarding.py), the
PostgreSQL service through psql and Redis through redis-cli.
"""

from __future__ import annotations

import concurrent.futures
import json
import pathlib
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.conftest import require
from tests.e2e.forwarding import (
    ChecksumServer,
    DigestOnEofServer,
    checked_transfer,
    free_port,
    half_close_exchange,
    session_process,
)
from tests.e2e.harness import Agent, Server, openssm_argv, running_system
from tests.support.wait import wait_until

pytestmark = pytest.mark.slow

POSTGRES = ("127.0.0.1", 5432)
REDIS = ("127.0.0.1", 6379)
PORT_FAILED = "Connection to destination port failed, check SSM Agent logs."


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Agent]]:
    with running_system(tmp_path_factory.mktemp("portfwd")) as pair:
        yield pair


@pytest.fixture(scope="module")
def destination() -> Iterator[ChecksumServer]:
    with ChecksumServer() as server:
        yield server


def aws_cli() -> str:
    return str(pathlib.Path(sys.executable).parent / "aws")


def aws_start_session(server: Server, agent: Agent, *args: str) -> list[str]:
    assert agent.instance_id
    return [
        aws_cli(),
        "ssm",
        "start-session",
        "--target",
        agent.instance_id,
        *args,
        "--endpoint-url",
        server.endpoint,
    ]


def openssm_start_session(server: Server, agent: Agent, *args: str) -> list[str]:
    assert agent.instance_id
    return openssm_argv(
        "start-session", "--target", agent.instance_id, *args, "--endpoint-url", server.endpoint
    )


def port_document(port: int, local: str | None = None) -> tuple[str, ...]:
    parameters = f"portNumber={port}" + (f", localPortNumber={local}" if local is not None else "")
    return ("--document-name", "AWS-StartPortForwardingSession", "--parameters", parameters)


def reachable(address: tuple[str, int]) -> bool:
    try:
        with socket.create_connection(address, timeout=1):
            return True
    except OSError:
        return False


def wait_session_history(server: Server, session_id: str, timeout: float = 30) -> dict[str, object]:
    ssm = server.client("ssm")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for session in ssm.describe_sessions(State="History")["Sessions"]:
            if session["SessionId"] == session_id:
                return dict(session)
        time.sleep(0.3)
    raise AssertionError(f"{session_id} not in session history")


# -- the operator's RDP-style command, through the AWS CLI and through openssm ---------------------


@pytest.mark.parametrize("command", ["aws", "openssm"])
def test_shorthand_parameters_fixed_local_port(
    system: tuple[Server, Agent], destination: ChecksumServer, command: str
) -> None:
    """The operator's `--parameters "portNumber=3389, localPortNumber=13389"` (comma and space)."""
    server, agent = system
    local = free_port()
    start = aws_start_session if command == "aws" else openssm_start_session
    argv = start(server, agent, *port_document(destination.port, str(local)))
    with session_process(argv, server.aws_env()) as session:
        assert session.local_ports() == [local]
        session.wait_for(r"Waiting for connections\.\.\.")
        checked_transfer(local, upload=3 << 20, download=3 << 20)
        session.wait_for(r"Connection accepted for session \[")
        checked_transfer(local, upload=10, download=1 << 20)  # a second connection on the same session
        session_id = session.session_ids()[0]
    assert wait_session_history(server, session_id)["Status"] == "Terminated"


def test_openssm_ephemeral_local_port(system: tuple[Server, Agent], destination: ChecksumServer) -> None:
    server, agent = system
    argv = openssm_start_session(server, agent, *port_document(destination.port))
    with session_process(argv, server.aws_env()) as session:
        (local,) = session.local_ports()
        assert local > 0
        session.wait_for(r"Waiting for connections\.\.\.")
        checked_transfer(local, upload=1 << 20, download=2 << 20)
        code = session.stop()
    assert code == 0, session.output
    assert "Exiting session with sessionId" in session.output


def test_remote_host_document(system: tuple[Server, Agent]) -> None:
    server, agent = system
    # 127.0.0.2 is not "localhost": proves the agent dials the host parameter.
    with ChecksumServer(host="127.0.0.2") as remote:
        argv = openssm_start_session(
            server,
            agent,
            "--document-name",
            "AWS-StartPortForwardingSessionToRemoteHost",
            "--parameters",
            f"host=127.0.0.2,portNumber={remote.port},localPortNumber=0",
        )
        with session_process(argv, server.aws_env()) as session:
            (local,) = session.local_ports()
            checked_transfer(local, upload=1 << 20, download=1 << 20)
        assert remote.connections == 1


# -- real programs through the forward ------------------------------------------------------------


def test_psql_through_port_forwarding(system: tuple[Server, Agent]) -> None:
    require(shutil.which("psql") is not None, "psql (postgresql-client) is not installed")
    require(reachable(POSTGRES), "PostgreSQL service is not running on 127.0.0.1:5432")
    server, agent = system
    argv = aws_start_session(server, agent, *port_document(POSTGRES[1], "0"))
    with session_process(argv, server.aws_env()) as session:
        (local,) = session.local_ports()
        for _ in range(2):  # twice: each psql run is a new connection on the same session
            out = subprocess.run(
                ["psql", "-h", "127.0.0.1", "-p", str(local), "-U", "postgres", "test", "-c", "select 6*7"],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert out.returncode == 0, out.stderr + session.output
            assert "42" in out.stdout.split("\n")[2], out.stdout


def test_redis_cli_through_port_forwarding(system: tuple[Server, Agent]) -> None:
    require(shutil.which("redis-cli") is not None, "redis-cli (redis-tools) is not installed")
    require(reachable(REDIS), "Redis service is not running on 127.0.0.1:6379")
    server, agent = system
    argv = openssm_start_session(server, agent, *port_document(REDIS[1]))
    key = f"openssm-port-test-{time.time_ns()}"
    with session_process(argv, server.aws_env()) as session:
        (local,) = session.local_ports()

        def redis(*args: str) -> str:
            out = subprocess.run(
                ["redis-cli", "-h", "127.0.0.1", "-p", str(local), *args],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert out.returncode == 0, out.stderr + session.output
            return out.stdout.strip()

        assert redis("PING") == "PONG"
        assert redis("SET", key, "forty-two", "EX", "60") == "OK"
        assert redis("GET", key) == "forty-two"
        assert redis("DEL", key) == "1"


# -- multiplexing -------------------------------------------------------------------------------------


def test_fifty_concurrent_connections_one_session(
    system: tuple[Server, Agent], destination: ChecksumServer
) -> None:
    server, agent = system
    argv = openssm_start_session(server, agent, *port_document(destination.port))
    before = destination.connections
    with session_process(argv, server.aws_env()) as session:
        (local,) = session.local_ports()
        with concurrent.futures.ThreadPoolExecutor(50) as pool:
            futures = [
                pool.submit(checked_transfer, local, upload=256 * 1024 + i, download=512 * 1024 - i)
                for i in range(50)
            ]
            for future in futures:
                future.result(timeout=100)
        assert session.output.count("Connection accepted for session") == 1  # the plugin's banner: once
        assert len(session.session_ids()) == 1
    assert destination.connections - before == 50


def test_reply_after_half_close_arrives(system: tuple[Server, Agent]) -> None:
    """A client that shuts down writing (nc -N, HTTP/1.0-style) still gets the destination's answer."""
    server, agent = system
    with DigestOnEofServer() as eof_server:
        argv = openssm_start_session(server, agent, *port_document(eof_server.port))
        with session_process(argv, server.aws_env()) as session:
            (local,) = session.local_ports()
            half_close_exchange(local, 10)
            half_close_exchange(local, 2 << 20)


STALL_SECONDS = 15.0
STALLED_BYTES = 80 << 20  # beyond every shared buffer on the path (the client keeps up to 64 MiB)


@pytest.mark.parametrize("direction", ["destination-reads-slowly", "local-client-reads-slowly"])
def test_slow_connection_does_not_stall_the_others(
    system: tuple[Server, Agent], destination: ChecksumServer, direction: str
) -> None:
    """One connection whose reader stops for a while must not hold up the session's other ones."""
    server, agent = system
    argv = openssm_start_session(server, agent, *port_document(destination.port))
    with session_process(argv, server.aws_env()) as session:
        (local,) = session.local_ports()
        connected = destination.connections
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            if direction == "destination-reads-slowly":
                stalled = pool.submit(
                    checked_transfer, local, upload=STALLED_BYTES, download=0, server_delay=STALL_SECONDS
                )
            else:
                stalled = pool.submit(
                    checked_transfer, local, upload=0, download=STALLED_BYTES, client_delay=STALL_SECONDS
                )
            wait_until(
                lambda: destination.connections > connected, "the stalled connection at its destination"
            )
            # Deliberate: a head start for the stall itself. A full buffer is the absence of progress, which
            # no event marks; 2 s moves far more than every buffer on the path holds at loopback speed.
            time.sleep(2.0)
            started = time.monotonic()
            others = [
                pool.submit(checked_transfer, local, upload=1 << 20, download=1 << 20) for _ in range(4)
            ]
            for future in others:
                future.result(timeout=60)
            others_took = time.monotonic() - started
            assert not stalled.done(), "the slow connection finished early: the test proves nothing"
            stalled.result(timeout=90)
    # Waiting for the stalled one would take at least STALL_SECONDS - 2 (they start 2 s in).
    assert others_took < STALL_SECONDS - 3, (
        f"other connections took {others_took:.1f}s: they waited for the stalled one"
    )


# -- refusals and errors ------------------------------------------------------------------------------


def test_destination_refused_is_reported_and_session_survives(
    system: tuple[Server, Agent], destination: ChecksumServer
) -> None:
    server, agent = system
    closed_port = free_port()
    argv = aws_start_session(server, agent, *port_document(closed_port))
    with session_process(argv, server.aws_env()) as session:
        (local,) = session.local_ports()
        with socket.create_connection(("127.0.0.1", local), timeout=30) as sock:
            sock.settimeout(30)
            assert sock.recv(1) == b""  # the local connection is closed, not left hanging
        session.wait_for(PORT_FAILED)
        with socket.create_connection(("127.0.0.1", local), timeout=30) as sock:
            sock.settimeout(30)
            assert sock.recv(1) == b""
        assert session.proc.poll() is None, "a refused destination must not end the session"


def test_denied_destination_is_refused_with_a_clear_error(system: tuple[Server, Agent]) -> None:
    server, agent = system
    argv = openssm_start_session(
        server,
        agent,
        "--document-name",
        "AWS-StartPortForwardingSessionToRemoteHost",
        "--parameters",
        "host=169.254.169.254,portNumber=80",
    )
    with session_process(argv, server.aws_env()) as session:
        session.wait_for(r"169\.254\.169\.254", timeout=60)
        session.wait_for(r"not allowed|denied", timeout=30)
        session.wait_exit(30)
    assert "opened for sessionId" not in session.output, session.output


def test_configured_deny_list(tmp_path: pathlib.Path, destination: ChecksumServer) -> None:
    """The agent's deny-list comes from its configuration (<state>/agent.json)."""
    server = Server(tmp_path / "server").start()
    agent = Agent(server, tmp_path / "agent")
    try:
        agent.register("deny-node")
        (agent.state_dir / "agent.json").write_text(
            json.dumps({"denied_networks": ["127.0.0.2/32", "169.254.0.0/16"]})
        )
        agent.start()

        def remote_forward(host: str, port: int) -> list[str]:
            return openssm_start_session(
                server,
                agent,
                "--document-name",
                "AWS-StartPortForwardingSessionToRemoteHost",
                "--parameters",
                f"host={host},portNumber={port}",
            )

        with session_process(remote_forward("127.0.0.2", destination.port), server.aws_env()) as refused:
            refused.wait_for(r"127\.0\.0\.2 is in the denied network 127\.0\.0\.2/32")
        with session_process(remote_forward("127.0.0.1", destination.port), server.aws_env()) as allowed:
            (local,) = allowed.local_ports()
            checked_transfer(local, upload=1000, download=1000)
    finally:
        agent.stop()
        server.stop()


def test_ssh_document_defaults_to_port_22(system: tuple[Server, Agent]) -> None:
    """AWS-StartSSHSession without parameters dials port 22 on the node. Stdio mode, as ssh's
    ProxyCommand: stdin stays open until the answer is seen (EOF on stdin means ssh has gone, and
    ends the session at once: given at the start, it raced the agent's dial)."""
    server, agent = system
    argv = openssm_start_session(server, agent, "--document-name", "AWS-StartSSHSession")
    listening = reachable(("127.0.0.1", 22))
    with session_process(argv, server.aws_env(), stdin=subprocess.PIPE) as session:
        if listening:
            session.wait_for(r"SSH-2\.0-", timeout=60)  # the server's banner, through the session
        else:
            session.wait_for(r"Unable to connect to localhost:22", timeout=60)
        assert session.proc.stdin is not None
        session.proc.stdin.close()
        session.wait_exit(30)
    assert "Unable to connect" not in session.output or not listening, session.output


@pytest.mark.parametrize(
    ("parameters", "named"),
    [
        ("portNumber=notaport", "portNumber"),
        ("portNumber=80, localPortNumber=99999999", "localPortNumber"),
        ("portNumber=80, colour=blue", "colour"),
    ],
)
def test_bad_parameters_are_refused_before_the_agent(
    system: tuple[Server, Agent], parameters: str, named: str
) -> None:
    server, agent = system
    ssm = server.client("ssm")
    sessions_before = {
        s["SessionId"]
        for state in ("Active", "History")
        for s in ssm.describe_sessions(State=state)["Sessions"]
    }
    argv = aws_start_session(
        server, agent, "--document-name", "AWS-StartPortForwardingSession", "--parameters", parameters
    )
    out = subprocess.run(argv, env=server.aws_env(), capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 255, out.stdout + out.stderr
    assert "ValidationException" in out.stderr or "InvalidParameters" in out.stderr, out.stderr
    assert named in out.stderr
    sessions_after = {
        s["SessionId"]
        for state in ("Active", "History")
        for s in ssm.describe_sessions(State=state)["Sessions"]
    }
    assert sessions_after == sessions_before, "a refused StartSession must not create a session"


# -- OpenSSM extras: --listen-address and several mappings --------------------------------------------


def test_listen_address(system: tuple[Server, Agent], destination: ChecksumServer) -> None:
    server, agent = system
    argv = openssm_start_session(
        server, agent, *port_document(destination.port), "--listen-address", "127.0.0.3"
    )
    with session_process(argv, server.aws_env()) as session:
        (local,) = session.local_ports()
        checked_transfer(local, host="127.0.0.3", upload=1 << 20, download=1 << 20)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", local), timeout=5).close()


def test_several_port_mappings_in_one_command(system: tuple[Server, Agent]) -> None:
    server, agent = system
    with ChecksumServer() as first, ChecksumServer(host="127.0.0.2") as second:
        wanted = free_port()
        argv = openssm_start_session(
            server,
            agent,
            "--forward",
            f"{wanted}:{first.port}",
            "--forward",
            f"0:127.0.0.2:{second.port}",
        )
        with session_process(argv, server.aws_env()) as session:
            ports = session.local_ports(count=2)
            assert wanted in ports
            other = next(port for port in ports if port != wanted)
            with concurrent.futures.ThreadPoolExecutor(2) as pool:
                jobs = [
                    pool.submit(checked_transfer, wanted, upload=1 << 20, download=1 << 20),
                    pool.submit(checked_transfer, other, upload=1 << 20, download=1 << 20),
                ]
                for job in jobs:
                    job.result(timeout=60)
            assert len(set(session.session_ids(count=2))) == 2
            code = session.stop()
        assert code == 0, session.output
        assert (first.connections, second.connections) == (1, 1)
