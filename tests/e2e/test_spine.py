"""The spine end to end: real server, real OpenSSM agent, real clients (OpenSSM's and the AWS CLI)."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import time
import urllib.request

import pexpect
import pytest

from tests.e2e.harness import REGION, Agent, Server, openssm_argv, running_system, wait_until

pytestmark = pytest.mark.slow

PROMPT_TIMEOUT = 30


def spawn(argv: list[str], env: dict[str, str], rows: int = 24, cols: int = 80) -> pexpect.spawn:
    child = pexpect.spawn(
        argv[0], argv[1:], env=env, dimensions=(rows, cols), timeout=PROMPT_TIMEOUT, encoding="utf-8"
    )
    return child


def expect_shell_works(child: pexpect.spawn) -> None:
    """Type into the remote shell and read the answer; then resize and check stty sees it."""
    child.sendline("echo $((6*7))")
    child.expect("42")
    child.setwinsize(30, 100)
    # The client polls the window size every 500 ms: ask until the shell sees the new size.
    deadline = time.monotonic() + 10
    while True:
        child.sendline("stty size")
        if child.expect([r"30 100", r"\r\n\d+ \d+\r\n"]) == 0:
            break
        assert time.monotonic() < deadline, "the new window size never reached the shell"


def start_session_argv(server: Server, agent: Agent, *extra: str) -> list[str]:
    assert agent.instance_id
    return openssm_argv(
        "start-session", "--target", agent.instance_id, "--endpoint-url", server.endpoint, *extra
    )


def test_shell_session_through_openssm_client(tmp_path: pathlib.Path) -> None:
    with running_system(tmp_path) as (server, agent):
        child = spawn(start_session_argv(server, agent), server.aws_env())
        child.expect(r"Starting session with SessionId: (\S+)")
        session_id = child.match.group(1).strip().rstrip(".")
        expect_shell_works(child)
        child.sendline("exit")
        child.expect(f"Exiting session with sessionId: {session_id}.")
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0

        ssm = server.client("ssm")
        history = ssm.describe_sessions(State="History")["Sessions"]
        ended = [s for s in history if s["SessionId"] == session_id]
        assert ended and ended[0]["Status"] == "Terminated"
        assert ended[0]["Target"] == agent.instance_id
        assert session_id.startswith("admin-")


def test_aws_cli_start_session_execs_openssm_plugin(tmp_path: pathlib.Path) -> None:
    with running_system(tmp_path) as (server, agent):
        aws = str(pathlib.Path(sys.executable).parent / "aws")
        assert agent.instance_id
        child = spawn(
            [aws, "ssm", "start-session", "--target", agent.instance_id, "--endpoint-url", server.endpoint],
            server.aws_env(),
        )
        expect_shell_works(child)
        child.sendline("exit")
        child.expect("Exiting session with sessionId")
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0


def test_interactive_command_document(tmp_path: pathlib.Path) -> None:
    with running_system(tmp_path) as (server, agent):
        argv = start_session_argv(
            server,
            agent,
            "--document-name",
            "AWS-StartInteractiveCommand",
            "--parameters",
            json.dumps({"command": ["echo interactive-$((40+2))"]}),
        )
        child = spawn(argv, server.aws_env())
        child.expect("interactive-42")
        child.expect("Exiting session with sessionId")
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0


def test_terminate_session_ends_a_live_session(tmp_path: pathlib.Path) -> None:
    with running_system(tmp_path) as (server, agent):
        child = spawn(start_session_argv(server, agent), server.aws_env())
        child.expect(r"Starting session with SessionId: (\S+)")
        session_id = child.match.group(1).strip().rstrip(".")
        child.sendline("echo ready-$((1+1))")
        child.expect("ready-2")
        ssm = server.client("ssm")
        active = ssm.describe_sessions(State="Active")["Sessions"]
        assert [s["SessionId"] for s in active] == [session_id]
        assert active[0]["Status"] == "Connected"
        assert ssm.terminate_session(SessionId=session_id)["SessionId"] == session_id
        child.expect(session_id)
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0

        def terminated() -> bool:
            history = ssm.describe_sessions(State="History")["Sessions"]
            return any(s["SessionId"] == session_id and s["Status"] == "Terminated" for s in history)

        wait_until(terminated, "session in history as Terminated")


def test_instance_information_and_ping_status(tmp_path: pathlib.Path) -> None:
    with running_system(tmp_path) as (server, agent):
        ssm = server.client("ssm")
        info = ssm.describe_instance_information()["InstanceInformationList"]
        assert len(info) == 1
        node = info[0]
        assert node["InstanceId"] == agent.instance_id
        assert node["InstanceId"].startswith("mi-") and len(node["InstanceId"]) == 20
        assert node["PingStatus"] == "Online"
        assert node["ResourceType"] == "ManagedInstance"
        assert node["PlatformType"] == "Linux"
        for field in (
            "PlatformName",
            "PlatformVersion",
            "AgentVersion",
            "IPAddress",
            "ComputerName",
            "IamRole",
        ):
            assert node.get(field), field
        assert ssm.get_connection_status(Target=agent.instance_id)["Status"] == "connected"

        agent.stop()

        def lost() -> bool:
            nodes = ssm.describe_instance_information()["InstanceInformationList"]
            return bool(nodes[0]["PingStatus"] == "ConnectionLost")

        wait_until(lost, "PingStatus ConnectionLost after the agent stopped")
        assert ssm.get_connection_status(Target=agent.instance_id)["Status"] == "notconnected"


def test_agent_and_server_restarts_while_idle(tmp_path: pathlib.Path) -> None:
    with running_system(tmp_path) as (server, agent):
        agent.stop()
        agent.start(wait_online=True)  # agent restart: registers its control channel again

        server.stop()
        restarted = Server(server.data_dir, port=server.port).start()
        try:
            agent.wait_online(timeout=60)  # reconnect with backoff to the restarted server
            child = spawn(start_session_argv(restarted, agent), restarted.aws_env())
            child.sendline("echo back-$((2*3))")
            child.expect("back-6")
            child.sendline("exit")
            child.expect(pexpect.EOF)
        finally:
            restarted.stop()


def test_aws_cli_activation_commands(tmp_path: pathlib.Path) -> None:
    server = Server(tmp_path / "server").start()
    try:
        aws = [
            str(pathlib.Path(sys.executable).parent / "aws"),
            "--endpoint-url",
            server.endpoint,
            "--output",
            "json",
        ]
        env = server.aws_env()

        def run(*args: str) -> dict[str, object]:
            out = subprocess.run(
                [*aws, *args], env=env, capture_output=True, text=True, timeout=60, check=False
            )
            assert out.returncode == 0, out.stderr
            return json.loads(out.stdout) if out.stdout.strip() else {}

        created = run("ssm", "create-activation", "--iam-role", "OpenSSMNodeRole")
        activation_id = created["ActivationId"]
        assert isinstance(created["ActivationCode"], str) and len(created["ActivationCode"]) >= 20
        listed = run("ssm", "describe-activations")
        assert [a["ActivationId"] for a in listed["ActivationList"]] == [activation_id]  # type: ignore[attr-defined]
        run("ssm", "delete-activation", "--activation-id", str(activation_id))
        assert run("ssm", "describe-activations")["ActivationList"] == []
        denied = subprocess.run(
            [*aws, "ssm", "delete-activation", "--activation-id", str(activation_id)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert denied.returncode != 0 and "InvalidActivationId" in denied.stderr
    finally:
        server.stop()


def test_quickstart_command(tmp_path: pathlib.Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    child = pexpect.spawn(
        sys.executable,
        ["-m", "openssm", "quickstart", "--data-dir", str(tmp_path / "qs")],
        env=env,
        timeout=90,
        encoding="utf-8",
        dimensions=(24, 80),
    )
    child.expect(r"Browser console: (http://127\.0\.0\.1:\d+)/console/")
    endpoint = child.match.group(1)
    child.expect(r"sign in with access key id (AKIA\w+) and the aws_secret_access_key in (\S+)credentials")
    key_id = child.match.group(1)
    child.expect("is online")
    with urllib.request.urlopen(f"{endpoint}/console/signin", timeout=10) as page:  # the console is there
        assert page.status == 200 and b"<form" in page.read()
    child.sendline("echo $((6*7))")
    child.expect("42")
    child.sendline("exit")
    child.expect("Exiting session with sessionId")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert REGION in (tmp_path / "qs" / "config").read_text()
    assert key_id in (tmp_path / "qs" / "credentials").read_text()
