"""Scale-out end to end: two server nodes on one PostgreSQL and one Redis, a real agent and client.

Any node answers the API; a session's StreamUrl points at the node holding the agent's control
channel; TerminateSession reaches that node over Redis; a crashed node's agent reconnects to the
other node, which carries on its live sessions, and its unopened ones are closed by the survivor's sweeper.
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import urllib.parse

import pexpect
import pytest

from openssm.gateway.sweeper import dead_node_reason
from tests.e2e.cluster import Node, new_master_key, running_cluster
from tests.e2e.harness import Agent, free_port, openssm_argv, wait_until
from tests.e2e.test_run_command import final_invocation, send
from tests.e2e.test_spine import spawn
from tests.support.postgres import REDIS_URL, fetch_value

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

# gateway_nodes liveness window (30 s) + one sweep interval (10 s) + slack.
SWEEP_TIMEOUT = 75.0


def start_session(via: Node, agent: Agent) -> pexpect.spawn:
    assert agent.instance_id
    argv = openssm_argv("start-session", "--target", agent.instance_id, "--endpoint-url", via.endpoint)
    return spawn(argv, via.aws_env())


def session_id_of(child: pexpect.spawn) -> str:
    child.expect(r"Starting session with SessionId: (\S+)")
    return str(child.match.group(1)).strip().rstrip(".")


def expect_answer(child: pexpect.spawn) -> None:
    child.sendline("echo $((6*7))")
    child.expect("42")


def ping_status(via: Node, instance_id: str) -> str:
    nodes = via.client("ssm").describe_instance_information()["InstanceInformationList"]
    return str(next(node["PingStatus"] for node in nodes if node["InstanceId"] == instance_id))


def stored(node: Node, query: str, key: str) -> object:
    return fetch_value(node.database_url, query, key)


def test_nodes_share_one_database_and_one_master_key(tmp_path: pathlib.Path) -> None:
    with running_cluster(tmp_path) as (node_a, node_b):  # started together: no migration race
        query = "SELECT count(*) FROM gateway_nodes WHERE node_id = $1"
        assert stored(node_a, query, node_a.node_id) == stored(node_a, query, node_b.node_id) == 1
        # An administrator key minted by one node signs requests to the other.
        assert node_b.client("iam", node_a.admin_credentials).get_user()["User"]["UserName"] == "admin"
        # A node with another master key could not read the secrets: it refuses to start.
        argv = openssm_argv(
            "server",
            "--data-dir",
            str(tmp_path / "stranger"),
            "--listen",
            f"127.0.0.1:{free_port()}",
            "--database-url",
            node_a.database_url,
            "--redis-url",
            REDIS_URL,
            "--node-id",
            "node-x",
        )
        env = {**os.environ, "OPENSSM_MASTER_KEY": new_master_key()}
        refused = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
        assert refused.returncode != 0
        assert "master key is not the one the database was created with" in refused.stderr


def test_any_node_starts_and_terminates_sessions_carried_by_another(tmp_path: pathlib.Path) -> None:
    with running_cluster(tmp_path) as (node_a, node_b):
        agent = Agent(node_a, tmp_path / "agent")
        agent.register()
        agent.start()
        try:
            assert agent.instance_id
            assert ping_status(node_b, agent.instance_id) == "Online"

            # StartSession answered by B points the client at A, where the control channel is.
            started = node_b.client("ssm").start_session(Target=agent.instance_id)
            stream = urllib.parse.urlsplit(started["StreamUrl"])
            assert (stream.scheme, stream.port) == ("ws", node_a.port)
            assert stream.path == f"/v1/data-channel/{started['SessionId']}"
            node_b.client("ssm").terminate_session(SessionId=started["SessionId"])
            wait_until(
                lambda: (node_b.session_record(started["SessionId"]) or {}).get("Status") == "Terminated",
                "an unopened session terminated through node B",
            )

            # A live shell, begun through B's API, carried by A; B's TerminateSession ends it on A.
            child = start_session(node_b, agent)
            session_id = session_id_of(child)
            expect_answer(child)
            record = node_a.session_record(session_id)
            assert record is not None and record["Status"] == "Connected"
            node_b.client("ssm").terminate_session(SessionId=session_id)
            child.expect(re.escape(session_id))
            child.expect(pexpect.EOF)
            child.close()
            assert child.exitstatus == 0
            wait_until(
                lambda: (node_a.session_record(session_id) or {}).get("Status") == "Terminated",
                "the live session terminated on node A",
            )

            # Run Command sent through B reaches the agent through A's control channel.
            command_id = send(node_b.client("ssm"), agent.instance_id, "echo run-$((6*7))")
            invocation = final_invocation(node_a.client("ssm"), command_id, agent.instance_id)
            assert invocation["Status"] == "Success"
            assert "run-42" in invocation["StandardOutputContent"]
        finally:
            agent.stop()


@pytest.mark.timeout(240)  # waits out the 30 s liveness window of the crashed node
def test_agent_fails_over_when_its_node_dies(tmp_path: pathlib.Path) -> None:
    with running_cluster(tmp_path) as (node_a, node_b):
        agent = Agent(node_a, tmp_path / "agent", failover_endpoints=(node_b.endpoint,))
        agent.register()
        agent.start()
        try:
            assert agent.instance_id
            # Two sessions carried by A: one never opened (only a crash sweep can end it), one live.
            unopened = node_b.client("ssm").start_session(Target=agent.instance_id)["SessionId"]
            orphan = start_session(node_b, agent)
            orphan_id = session_id_of(orphan)
            expect_answer(orphan)
            record = node_b.session_record(orphan_id)
            assert record is not None and record["Status"] == "Connected"

            node_a.kill()

            # Until A misses its heartbeats, PingStatus cannot tell a dead node's agents from live
            # ones: wait for the agent's own move to B, then B must report it Online.
            def control_channel_on_b() -> bool:
                query = "SELECT control_node_id FROM instances WHERE instance_id = $1"
                return stored(node_b, query, agent.instance_id or "") == node_b.node_id

            wait_until(control_channel_on_b, "the agent's control channel on node B", timeout=60)
            assert ping_status(node_b, agent.instance_id) == "Online"
            assert (
                node_b.client("ssm").get_connection_status(Target=agent.instance_id)["Status"] == "connected"
            )

            # New sessions run on B now.
            child = start_session(node_b, agent)
            session_id = session_id_of(child)
            expect_answer(child)
            child.sendline("exit")
            child.expect(pexpect.EOF)
            child.close()
            assert child.exitstatus == 0
            query = "SELECT node_id FROM sessions WHERE session_id = $1"
            assert stored(node_b, query, session_id) == node_b.node_id
            command_id = send(node_b.client("ssm"), agent.instance_id, "echo after-$((6*7))")
            invocation = final_invocation(node_b.client("ssm"), command_id, agent.instance_id)
            assert invocation["Status"] == "Success" and "after-42" in invocation["StandardOutputContent"]

            # The live session goes on at B once A is known dead: the agent and the client re-dial there.
            def orphan_on_b() -> bool:
                query = "SELECT node_id FROM sessions WHERE session_id = $1"
                return stored(node_b, query, orphan_id) == node_b.node_id

            wait_until(orphan_on_b, "node A's live session carried on by node B", timeout=SWEEP_TIMEOUT)
            expect_answer(orphan)

            # Nobody but a sweeper can end the unopened one, once A has been silent long enough.
            def unopened_terminated() -> bool:
                return (node_b.session_record(unopened) or {}).get("Status") == "Terminated"

            wait_until(
                unopened_terminated, "node A's unopened session swept by node B", timeout=SWEEP_TIMEOUT
            )
            query = "SELECT termination_reason FROM sessions WHERE session_id = $1"
            assert stored(node_b, query, unopened) == dead_node_reason(node_a.node_id)
            orphan.close(force=True)
        finally:
            agent.stop()
