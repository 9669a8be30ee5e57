"""A cluster node dies (SIGKILL) while sessions run on it and on another node: two real `openssm
server` nodes on one PostgreSQL and one Redis, an agent homed on each (with the other as its
fail-over), and `openssm start-session` port forwards whose API calls go to the surviving node (as
through a load balancer). The dead node's session is carried on by the survivor once both ends
re-dial there (the agent after failing over, the client after ResumeSession names the survivor),
every byte once (SHA-256 at both ends, printed); the survivor's own session never notices."""

from __future__ import annotations

import concurrent.futures
import contextlib
import pathlib
import time
from collections.abc import Iterator

import pytest

from tests.e2e.cluster import Node, running_cluster
from tests.e2e.forwarding import ChecksumServer, SessionProcess, reported_transfer, session_process
from tests.e2e.harness import Agent, port_forwarding_argv, wait_until
from tests.support.postgres import fetch_value

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

MIB = 1 << 20
TRANSFER = 128 * MIB  # each way, on each session
RESUME_WINDOW = 90.0  # > the liveness window (30 s) after which the survivor takes a session over


@contextlib.contextmanager
def port_session(
    api: Node, agent: Agent, destination: ChecksumServer
) -> Iterator[tuple[SessionProcess, int, str]]:
    assert agent.instance_id
    with session_process(
        port_forwarding_argv(api, agent.instance_id, destination.port), api.aws_env()
    ) as session:
        (local,) = session.local_ports()
        (session_id,) = session.session_ids()
        session.wait_for(r"Waiting for connections\.\.\.")
        yield session, local, session_id


def what_happened(sessions: dict[str, SessionProcess], logs: dict[str, pathlib.Path]) -> str:
    """For a failure: each client's output and the warnings of every server and agent log (a
    fault test that fails under load once in many runs is only fixed from what it left behind)."""
    parts = [f"--- {name} output ---\n{session.output[-4000:]}" for name, session in sessions.items()]
    for name, path in logs.items():
        text = path.read_text(errors="replace") if path.exists() else "(no log)"
        lines = [line for line in text.splitlines() if " WARNING " in line or " ERROR " in line]
        parts.append(f"--- {name} warnings ---\n" + "\n".join(lines[-60:]))
    return "\n".join(parts)


def node_of(node: Node, session_id: str) -> object:
    return fetch_value(node.database_url, "SELECT node_id FROM sessions WHERE session_id = $1", session_id)


@pytest.mark.timeout(420)
def test_a_dead_nodes_session_goes_on_at_the_survivor(tmp_path: pathlib.Path) -> None:
    server_args = ("--session-resume-window", str(RESUME_WINDOW))
    with (
        running_cluster(tmp_path, server_args=server_args) as (node_a, node_b),
        ChecksumServer() as to_a,
        ChecksumServer() as to_b,
    ):
        agent_a = Agent(node_a, tmp_path / "agent-a", failover_endpoints=(node_b.endpoint,))
        agent_b = Agent(node_b, tmp_path / "agent-b", failover_endpoints=(node_a.endpoint,))
        try:
            for agent, name in ((agent_a, "node-on-a"), (agent_b, "node-on-b")):
                agent.register(name)
                agent.start()
            with (
                port_session(node_b, agent_a, to_a) as (session_a, local_a, id_a),
                port_session(node_b, agent_b, to_b) as (session_b, local_b, id_b),
                concurrent.futures.ThreadPoolExecutor(2) as pool,
            ):
                assert node_of(node_b, id_a) == node_a.node_id and node_of(node_b, id_b) == node_b.node_id
                on_a = pool.submit(
                    reported_transfer, local_a, upload=TRANSFER, download=TRANSFER, timeout=180
                )
                on_b = pool.submit(
                    reported_transfer, local_b, upload=TRANSFER, download=TRANSFER, timeout=180
                )
                wait_until(lambda: to_a.received >= 8 * MIB, "8 MiB through node A")
                assert not on_a.done()
                killed_at = time.monotonic()
                node_a.kill()
                try:
                    report_b = on_b.result(240)
                    report_a = on_a.result(360)
                except Exception as exc:
                    logs = {
                        "node A": node_a.data_dir / "server.log",
                        "node B": node_b.data_dir / "server.log",
                        "agent A": agent_a.state_dir / "agent.log",
                        "agent B": agent_b.state_dir / "agent.log",
                    }
                    evidence = what_happened({"client A": session_a, "client B": session_b}, logs)
                    raise AssertionError(f"a transfer failed: {exc!r}\n{evidence}") from exc
                carried_after = time.monotonic() - killed_at
                assert node_of(node_b, id_a) == node_b.node_id
                for session_id in (id_a, id_b):
                    assert (node_b.session_record(session_id) or {}).get("Status") == "Connected"
                session_a.stop()
                session_b.stop()
        finally:
            agent_a.stop()
            agent_b.stop()
    print(f"node A SIGKILLed; its session finished on node B {carried_after:.1f} s later")
    print(report_a.describe("session of the dead node A"))
    print(report_b.describe("session of the surviving node B"))
    for report in (report_a, report_b):
        assert report.client_sent == report.server_received and report.server_sent == report.client_received
