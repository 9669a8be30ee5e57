"""An OpenSSM agent joining with IAM credentials, as an EC2 instance does: real server and agent
processes, the IAM user made with the real AWS CLI, the credentials in a profile of an AWS shared
credentials file (the standard chain). Allowed: the node appears as its i- id, runs a command and a
shell. Refused: registration fails with AccessDeniedException, the server logs why, no node appears.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pexpect
import pytest

from tests.e2e.harness import Process, Server, openssm_argv, wait_until
from tests.support.node_policy import iam_node_policy

pytestmark = pytest.mark.slow

ACCOUNT = "000000000000"  # the server's default account
NODE = "i-0123456789abcdef0"
STRANGER = "i-0fedcba9876543210"


def aws(server: Server, *args: str) -> dict[str, Any]:
    argv = [str(pathlib.Path(sys.executable).parent / "aws"), *args, "--endpoint-url", server.endpoint]
    done = subprocess.run(argv, env=server.aws_env(), capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if done.stdout.strip() else {}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(tmp_path_factory.mktemp("iam-node") / "server").start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def node_profile(server: Server, tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """A shared credentials file with profile "node": the IAM user the node signs as."""
    aws(server, "iam", "create-user", "--user-name", "web-1")
    aws(
        server,
        "iam",
        "put-user-policy",
        "--user-name",
        "web-1",
        "--policy-name",
        "node",
        "--policy-document",
        json.dumps(iam_node_policy(server.region, ACCOUNT, NODE)),
    )
    key = aws(server, "iam", "create-access-key", "--user-name", "web-1")["AccessKey"]
    path = tmp_path_factory.mktemp("node-credentials") / "credentials"
    path.write_text(
        f"[node]\naws_access_key_id = {key['AccessKeyId']}\naws_secret_access_key = {key['SecretAccessKey']}\n"
    )
    return path


def node_env(credentials: pathlib.Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_SHARED_CREDENTIALS_FILE=str(credentials), AWS_CONFIG_FILE="/dev/null")
    env["OPENSSM_AGENT_HEARTBEAT_SECONDS"] = "5"
    return env


def register(
    server: Server, state: pathlib.Path, credentials: pathlib.Path, instance_id: str
) -> subprocess.CompletedProcess[str]:
    argv = openssm_argv(
        "agent",
        "register",
        "--iam",
        "--instance-id",
        instance_id,
        "--profile",
        "node",
        "--endpoint",
        server.endpoint,
        "--region",
        server.region,
        "--state-dir",
        str(state),
    )
    return subprocess.run(
        argv, env=node_env(credentials), capture_output=True, text=True, timeout=60, check=False
    )


def test_a_node_with_iam_credentials_joins_runs_commands_and_sessions(
    server: Server, node_profile: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    state = tmp_path / "agent"
    registered = register(server, state, node_profile, NODE)
    assert registered.returncode == 0, registered.stderr
    assert registered.stdout.strip() == NODE
    assert not (state / "private-key.pem").exists()  # no activation, no key pair
    saved = json.loads((state / "registration.json").read_text())
    assert (saved["identity"], saved["profile"], saved["instance_id"]) == ("iam", "node", NODE)

    agent = Process(
        openssm_argv("agent", "run", "--state-dir", str(state)),
        state / "agent.log",
        env=node_env(node_profile),
    )
    try:
        ssm = server.client("ssm")
        wait_until(
            lambda: ssm.get_connection_status(Target=NODE)["Status"] == "connected",
            f"{NODE} online",
            timeout=30,
        )
        [node] = aws(
            server, "ssm", "describe-instance-information", "--filters", f"Key=InstanceIds,Values={NODE}"
        )["InstanceInformationList"]
        assert node["ResourceType"] == "EC2Instance" and node["PingStatus"] == "Online"

        # Run Command over its control channel.
        command_id = aws(
            server,
            "ssm",
            "send-command",
            "--instance-ids",
            NODE,
            "--document-name",
            "AWS-RunShellScript",
            "--parameters",
            "commands=echo joined-$((40+2))",
        )["Command"]["CommandId"]
        found: dict[str, Any] = {}

        def finished() -> bool:
            found.update(ssm.get_command_invocation(CommandId=command_id, InstanceId=NODE))
            return found["Status"] not in ("Pending", "InProgress")

        wait_until(finished, "the command on the IAM node", timeout=30, interval=0.3)
        assert (found["Status"], found["StandardOutputContent"]) == ("Success", "joined-42\n")

        # A shell over a data channel the node opens with its IAM credentials.
        argv = openssm_argv("start-session", "--target", NODE, "--endpoint-url", server.endpoint)
        child = pexpect.spawn(argv[0], argv[1:], env=server.aws_env(), timeout=30, encoding="utf-8")
        try:
            child.expect(r"[#$] ")
            child.sendline("echo shell-$((6*7))")
            child.expect("shell-42")
            child.sendline("exit")
            child.expect(pexpect.EOF)
        finally:
            child.close()
    finally:
        agent.stop()


def test_a_node_not_allowed_for_the_id_it_reports_is_refused_and_the_server_says_why(
    server: Server, node_profile: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    refused = register(server, tmp_path / "agent", node_profile, STRANGER)
    assert refused.returncode != 0
    assert "AccessDeniedException" in refused.stderr and "ssm:UpdateInstanceInformation" in refused.stderr
    assert f"arn:aws:ec2:{server.region}:{ACCOUNT}:instance/{STRANGER}" in refused.stderr
    assert not (tmp_path / "agent" / "registration.json").exists()
    nodes = aws(server, "ssm", "describe-instance-information")["InstanceInformationList"]
    assert STRANGER not in {node["InstanceId"] for node in nodes}
    assert server.process is not None
    log = server.process.log()
    resource = f"arn:aws:ec2:{server.region}:{ACCOUNT}:instance/{STRANGER}"
    assert (
        f"refused ssm:UpdateInstanceInformation on {resource} by arn:aws:iam::{ACCOUNT}:user/web-1 (api)"
        in log
    )
