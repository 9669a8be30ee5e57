"""Run Command end to end: real server, real OpenSSM agent, the real `aws` CLI and boto3."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import botocore.exceptions
import pytest

from tests.e2e.harness import Agent, Server, wait_until

pytestmark = pytest.mark.slow

FINAL = ("Success", "Failed", "TimedOut", "Cancelled")


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Agent]]:
    root = tmp_path_factory.mktemp("run-command")
    server = Server(root / "server").start()
    agent = Agent(server, root / "agent")
    try:
        agent.register()
        agent.start()
        yield server, agent
    finally:
        agent.stop()
        server.stop()


def aws(server: Server, *args: str) -> dict[str, Any]:
    argv = [str(pathlib.Path(sys.executable).parent / "aws"), *args, "--endpoint-url", server.endpoint]
    out = subprocess.run(argv, env=server.aws_env(), capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    result: dict[str, Any] = json.loads(out.stdout) if out.stdout.strip() else {}
    return result


def final_invocation(ssm: Any, command_id: str, instance_id: str, timeout: float = 30.0) -> dict[str, Any]:
    found: dict[str, Any] = {}

    def finished() -> bool:
        found.update(ssm.get_command_invocation(CommandId=command_id, InstanceId=instance_id))
        return found["Status"] in FINAL

    wait_until(finished, f"command {command_id} to finish", timeout=timeout, interval=0.3)
    return found


def send(ssm: Any, instance_id: str, *commands: str, **extra: Any) -> str:
    parameters = {"commands": list(commands), **extra.pop("parameters", {})}
    response = ssm.send_command(
        InstanceIds=[instance_id], DocumentName="AWS-RunShellScript", Parameters=parameters, **extra
    )
    command_id: str = response["Command"]["CommandId"]
    return command_id


def test_aws_cli_send_command_and_get_invocation(system: tuple[Server, Agent]) -> None:
    server, agent = system
    assert agent.instance_id
    sent = aws(
        server,
        "ssm",
        "send-command",
        "--document-name",
        "AWS-RunShellScript",
        "--parameters",
        "commands='echo $((6*7))'",
        "--targets",
        f"Key=InstanceIds,Values={agent.instance_id}",
        "--comment",
        "the answer",
    )
    command = sent["Command"]
    assert command["DocumentName"] == "AWS-RunShellScript"
    assert command["Parameters"]["commands"] == ["echo $((6*7))"]
    assert command["Targets"] == [{"Key": "InstanceIds", "Values": [agent.instance_id]}]
    assert command["TargetCount"] == 1
    assert len(command["CommandId"]) == 36
    found: dict[str, Any] = {}

    def finished() -> bool:
        found.update(
            aws(
                server,
                "ssm",
                "get-command-invocation",
                "--command-id",
                command["CommandId"],
                "--instance-id",
                agent.instance_id or "",
            )
        )
        return found["Status"] in FINAL

    wait_until(finished, "the command to finish", timeout=30, interval=0.5)
    assert found["Status"] == "Success", found
    assert found["StatusDetails"] == "Success"
    assert found["StandardOutputContent"] == "42\n"
    assert found["StandardErrorContent"] == ""
    assert found["ResponseCode"] == 0
    assert found["PluginName"] == "aws:runShellScript"
    assert found["Comment"] == "the answer"

    listed = aws(server, "ssm", "list-commands", "--command-id", command["CommandId"])["Commands"]
    assert listed[0]["Status"] == "Success" and listed[0]["CompletedCount"] == 1
    invocations = aws(
        server, "ssm", "list-command-invocations", "--command-id", command["CommandId"], "--details"
    )["CommandInvocations"]
    assert invocations[0]["InstanceId"] == agent.instance_id
    assert invocations[0]["CommandPlugins"][0]["Output"] == "42\n"
    assert invocations[0]["CommandPlugins"][0]["Name"] == "aws:runShellScript"


def test_failing_command_reports_exit_code_and_stderr(system: tuple[Server, Agent]) -> None:
    server, agent = system
    assert agent.instance_id
    ssm = server.client("ssm")
    command_id = send(ssm, agent.instance_id, "echo partial", "echo oops >&2", "exit 3")
    found = final_invocation(ssm, command_id, agent.instance_id)
    assert found["Status"] == "Failed"
    assert found["ResponseCode"] == 3
    assert found["StandardOutputContent"] == "partial\n"
    assert found["StandardErrorContent"] == "oops\n"
    assert ssm.list_commands(CommandId=command_id)["Commands"][0]["Status"] == "Failed"


def test_working_directory_and_execution_timeout(
    system: tuple[Server, Agent], tmp_path: pathlib.Path
) -> None:
    server, agent = system
    assert agent.instance_id
    ssm = server.client("ssm")
    command_id = send(ssm, agent.instance_id, "pwd", parameters={"workingDirectory": [str(tmp_path)]})
    assert final_invocation(ssm, command_id, agent.instance_id)["StandardOutputContent"] == f"{tmp_path}\n"
    command_id = send(
        ssm, agent.instance_id, "echo started", "sleep 60", parameters={"executionTimeout": ["2"]}
    )
    found = final_invocation(ssm, command_id, agent.instance_id)
    assert found["Status"] == "TimedOut"
    assert found["StatusDetails"] == "ExecutionTimedOut"
    assert found["StandardOutputContent"] == "started\n"


def test_cancel_running_command(system: tuple[Server, Agent]) -> None:
    server, agent = system
    assert agent.instance_id
    ssm = server.client("ssm")
    command_id = send(ssm, agent.instance_id, "echo started", "sleep 60")
    wait_until(
        lambda: (
            ssm.get_command_invocation(CommandId=command_id, InstanceId=agent.instance_id)["Status"]
            == "InProgress"
        ),
        "the command to start",
        timeout=20,
    )
    ssm.cancel_command(CommandId=command_id)
    found = final_invocation(ssm, command_id, agent.instance_id, timeout=20)
    assert found["Status"] == "Cancelled"
    assert ssm.list_commands(CommandId=command_id)["Commands"][0]["Status"] == "Cancelled"


def test_errors_in_aws_words(system: tuple[Server, Agent]) -> None:
    server, agent = system
    assert agent.instance_id
    ssm = server.client("ssm")
    with pytest.raises(botocore.exceptions.ClientError) as unknown_instance:
        ssm.send_command(
            InstanceIds=["mi-0123456789abcdef0"],
            DocumentName="AWS-RunShellScript",
            Parameters={"commands": ["id"]},
        )
    assert unknown_instance.value.response["Error"]["Code"] == "InvalidInstanceId"
    with pytest.raises(botocore.exceptions.ClientError) as unknown_document:
        ssm.send_command(InstanceIds=[agent.instance_id], DocumentName="No-Such-Document")
    assert unknown_document.value.response["Error"]["Code"] == "InvalidDocument"
    with pytest.raises(botocore.exceptions.ClientError) as missing_parameter:
        ssm.send_command(InstanceIds=[agent.instance_id], DocumentName="AWS-RunShellScript")
    assert missing_parameter.value.response["Error"]["Code"] == "InvalidParameters"
    with pytest.raises(botocore.exceptions.ClientError) as no_invocation:
        ssm.get_command_invocation(
            CommandId="00000000-0000-4000-8000-000000000000", InstanceId=agent.instance_id
        )
    assert no_invocation.value.response["Error"]["Code"] == "InvocationDoesNotExist"


def test_send_command_needs_permission_on_the_instance(system: tuple[Server, Agent]) -> None:
    server, agent = system
    assert agent.instance_id
    iam = server.client("iam")
    iam.create_user(UserName="reader")
    reader_policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": ["ssm:ListCommands", "ssm:GetCommandInvocation"], "Resource": "*"},
            {
                "Effect": "Allow",
                "Action": "ssm:SendCommand",
                "Resource": "arn:aws:ssm:*::document/AWS-RunShellScript",
            },
        ],
    }
    iam.put_user_policy(UserName="reader", PolicyName="read", PolicyDocument=json.dumps(reader_policy))
    key = iam.create_access_key(UserName="reader")["AccessKey"]
    reader = server.client("ssm", (key["AccessKeyId"], key["SecretAccessKey"]))
    wait_until(lambda: reader.list_commands() is not None, "the new key to work", timeout=10)
    with pytest.raises(botocore.exceptions.ClientError) as denied:
        send(reader, agent.instance_id, "id")
    assert denied.value.response["Error"]["Code"] == "AccessDeniedException"
    assert "ssm:SendCommand" in denied.value.response["Error"]["Message"]


def test_offline_agent_gets_the_command_when_it_returns(system: tuple[Server, Agent]) -> None:
    """Last in the module: it stops and restarts the shared agent."""
    server, agent = system
    assert agent.instance_id
    ssm = server.client("ssm")
    agent.stop()
    wait_until(
        lambda: ssm.get_connection_status(Target=agent.instance_id)["Status"] == "notconnected",
        "the agent to drop off",
        timeout=20,
    )
    command_id = send(ssm, agent.instance_id, "echo $((6*7))")
    pending = ssm.get_command_invocation(CommandId=command_id, InstanceId=agent.instance_id)
    assert pending["Status"] == "Pending"
    assert pending["ResponseCode"] == -1
    assert ssm.list_commands(CommandId=command_id)["Commands"][0]["Status"] == "Pending"
    agent.start()
    found = final_invocation(ssm, command_id, agent.instance_id)
    assert found["Status"] == "Success"
    assert found["StandardOutputContent"] == "42\n"
