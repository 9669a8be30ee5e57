"""Run Command for a fleet, end to end: a real server, three real OpenSSM agents, the real AWS CLI,
moto's S3 and CloudWatch Logs servers, and ``openssm run``.

Rate controls (MaxConcurrency, MaxErrors) with AWS's statuses, the execution timeout, CancelCommand
while a node runs, targets by InstanceIds / tag / tag-key, output to S3 and CloudWatch Logs in AWS's
layout, and what ``openssm run`` shows and exits with.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import pathlib
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pexpect
import pytest

from tests.e2e.harness import Agent, Server, openssm_argv, wait_until
from tests.integration.logs_support import SINK_CREDENTIALS, MotoServer, log_messages, s3_text

pytestmark = pytest.mark.slow

ACTIVE = ("Pending", "InProgress", "Delayed", "Cancelling")
BUCKET = "fleet-output"
PREFIX = "runs"
GROUP = "/aws/ssm/AWS-RunShellScript"  # AWS's default for the document


class Fleet:
    def __init__(self, server: Server, agents: list[Agent], moto: MotoServer) -> None:
        self.server, self.agents, self.moto = server, agents, moto
        self.ids = sorted(agent.instance_id or "" for agent in agents)
        self.ssm = server.client("ssm")

    def aws(self, *args: str) -> dict[str, Any]:
        argv = [
            str(pathlib.Path(sys.executable).parent / "aws"),
            *args,
            "--endpoint-url",
            self.server.endpoint,
        ]
        done = subprocess.run(
            argv, env=self.server.aws_env(), capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout) if done.stdout.strip() else {}

    def send(self, *args: str) -> str:
        sent = self.aws("ssm", "send-command", "--document-name", "AWS-RunShellScript", *args)
        command_id: str = sent["Command"]["CommandId"]
        return command_id

    def finished(
        self, command_id: str, timeout: float = 60
    ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        """The command and its invocations by instance, once it has ended."""
        found: dict[str, Any] = {}

        def ended() -> bool:
            found.update(self.ssm.list_commands(CommandId=command_id)["Commands"][0])
            return found["Status"] not in ACTIVE

        wait_until(ended, f"command {command_id} to end", timeout=timeout, interval=0.3)
        listed = self.aws("ssm", "list-command-invocations", "--command-id", command_id, "--details")
        return found, {item["InstanceId"]: item for item in listed["CommandInvocations"]}

    def node(self, instance_id: str) -> Agent:
        return next(agent for agent in self.agents if agent.instance_id == instance_id)

    def invocation(self, command_id: str, instance_id: str) -> dict[str, Any]:
        return self.aws(
            "ssm", "get-command-invocation", "--command-id", command_id, "--instance-id", instance_id
        )


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("fleet")
    moto = MotoServer(root / "moto.log")
    moto.client("s3").create_bucket(Bucket=BUCKET)
    env = {**os.environ, **SINK_CREDENTIALS}
    sinks = (
        "--s3-endpoint-url",
        moto.endpoint,
        "--logs-endpoint-url",
        moto.endpoint,
        "--log-upload-retry",
        "1",
    )
    server = Server(root / "server", extra_args=sinks, env=env).start()
    agents = [Agent(server, root / f"agent-{n}") for n in range(3)]
    try:
        for number, agent in enumerate(agents):
            agent.register(name=f"node-{number}")
            agent.start()
        fleet = Fleet(server, agents, moto)
        web, db = fleet.ids[:2], fleet.ids[2]
        tags = {
            **dict.fromkeys(web, ("Key=Role,Value=web",)),
            db: ("Key=Role,Value=db", "Key=Tier,Value=data"),
        }
        for instance_id, pairs in tags.items():  # the operator's way to tag managed nodes
            fleet.aws(
                "ssm",
                "add-tags-to-resource",
                "--resource-type",
                "ManagedInstance",
                "--resource-id",
                instance_id,
                "--tags",
                *pairs,
            )
        yield fleet
    finally:
        for agent in agents:
            agent.stop()
        server.stop()
        moto.stop()


def fails_on(agent: Agent, code: int = 5) -> str:
    """A command that fails on one node only: each agent is the parent of the steps it runs."""
    assert agent.process is not None
    return f"test $PPID -ne {agent.process.proc.pid} || exit {code}; echo ok"


def times(invocation: dict[str, Any]) -> tuple[float, float]:
    plugin = invocation["CommandPlugins"][0]
    return plugin["ResponseStartDateTime"], plugin["ResponseFinishDateTime"]


def as_epoch(value: Any) -> float:
    return value if isinstance(value, float | int) else dt.datetime.fromisoformat(value).timestamp()


def test_targets_by_tag_tag_key_and_instance_ids(fleet: Fleet) -> None:
    web, db = fleet.ids[:2], fleet.ids[2]
    by_tag = fleet.send("--targets", "Key=tag:Role,Values=web", "--parameters", "commands=hostname")
    by_key = fleet.send("--targets", "Key=tag-key,Values=Tier", "--parameters", "commands=hostname")
    by_ids = fleet.send(
        "--targets", f"Key=InstanceIds,Values={db},{web[0]}", "--parameters", "commands=hostname"
    )
    nobody = fleet.send("--targets", "Key=tag:Role,Values=nobody", "--parameters", "commands=hostname")
    assert sorted(fleet.finished(by_tag)[1]) == web
    assert sorted(fleet.finished(by_key)[1]) == [db]
    command, invocations = fleet.finished(by_ids)
    assert sorted(invocations) == sorted([db, web[0]]) and command["Status"] == "Success"
    command, invocations = fleet.finished(nobody)
    assert (command["Status"], command["StatusDetails"], command["TargetCount"], invocations) == (
        "Success",
        "NoInstancesInTag",
        0,
        {},
    )


def test_one_at_a_time_with_no_errors_allowed_stops_at_the_first_failure(
    fleet: Fleet, tmp_path: pathlib.Path
) -> None:
    """The reported bug: --max-concurrency 1 --max-errors 0 over two nodes ran a failing command on both."""
    ran = tmp_path / "ran.log"
    command_id = fleet.send(
        "--targets",
        "Key=tag:Role,Values=web",
        "--max-concurrency",
        "1",
        "--max-errors",
        "0",
        "--parameters",
        f"commands=echo ran >> {ran}; exit 3",
    )
    command, invocations = fleet.finished(command_id)
    first, second = fleet.ids[:2]  # sent in instance id order
    assert ran.read_text() == "ran\n"  # one node ran it, not both
    assert (invocations[first]["Status"], invocations[first]["StatusDetails"]) == ("Failed", "Failed")
    assert invocations[first]["CommandPlugins"][0]["ResponseCode"] == 3
    assert (invocations[second]["Status"], invocations[second]["StatusDetails"]) == (
        "Cancelled",
        "Terminated",
    )
    assert invocations[second]["CommandPlugins"] == []
    assert (command["Status"], command["StatusDetails"]) == ("Failed", "Failed")
    assert (command["TargetCount"], command["CompletedCount"], command["ErrorCount"]) == (2, 2, 1)
    assert command["DeliveryTimedOutCount"] == 0
    terminated = fleet.aws(
        "ssm",
        "list-command-invocations",
        "--command-id",
        command_id,
        "--filters",
        "key=Status,value=Terminated",
    )
    assert [item["InstanceId"] for item in terminated["CommandInvocations"]] == [second]


def test_max_errors_lets_that_many_fail_then_stops(fleet: Fleet) -> None:
    command_id = fleet.send(
        "--instance-ids",
        *fleet.ids,
        "--max-concurrency",
        "1",
        "--max-errors",
        "1",
        "--parameters",
        "commands=exit 1",
    )
    command, invocations = fleet.finished(command_id)
    first, second, third = fleet.ids
    assert [invocations[i]["Status"] for i in (first, second)] == [
        "Failed",
        "Failed",
    ]  # the second was allowed
    assert (invocations[third]["Status"], invocations[third]["StatusDetails"]) == ("Cancelled", "Terminated")
    assert (command["Status"], command["ErrorCount"], command["CompletedCount"]) == ("Failed", 2, 3)


def test_concurrency_runs_one_node_after_the_other(fleet: Fleet) -> None:
    command_id = fleet.send(
        "--instance-ids", *fleet.ids, "--max-concurrency", "1", "--parameters", "commands=sleep 1"
    )
    command, invocations = fleet.finished(command_id)
    assert command["Status"] == "Success"
    spans = sorted(times(invocations[i]) for i in fleet.ids)
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert as_epoch(start) >= as_epoch(end) - 0.05, spans  # never two at once


def test_failures_within_max_errors_leave_the_command_incomplete(fleet: Fleet) -> None:
    """50 % of three nodes allows one error: the command does not fail, but not all succeeded."""
    last = fleet.node(fleet.ids[2])
    command_id = fleet.send(
        "--instance-ids", *fleet.ids, "--max-errors", "50%", "--parameters", f"commands={fails_on(last)}"
    )
    command, invocations = fleet.finished(command_id)
    assert [invocations[i]["Status"] for i in fleet.ids] == ["Success", "Success", "Failed"]
    assert (command["Status"], command["StatusDetails"], command["ErrorCount"]) == (
        "Success",
        "Incomplete",
        1,
    )


def test_execution_timeout_kills_the_step_as_aws_reports_it(fleet: Fleet, tmp_path: pathlib.Path) -> None:
    marker = tmp_path / "survived"
    target = fleet.ids[0]
    command_id = fleet.send(
        "--instance-ids",
        target,
        "--parameters",
        json.dumps({"commands": ["echo started", f"sleep 30; touch {marker}"], "executionTimeout": ["2"]}),
    )
    command, _ = fleet.finished(command_id)
    found = fleet.invocation(command_id, target)
    assert (found["Status"], found["StatusDetails"], found["ResponseCode"]) == (
        "TimedOut",
        "ExecutionTimedOut",
        137,
    )
    assert found["StandardOutputContent"] == "started\n"
    assert (command["Status"], command["StatusDetails"], command["ErrorCount"]) == (
        "TimedOut",
        "ExecutionTimedOut",
        1,
    )
    assert not marker.exists()


def test_cancel_while_a_node_runs(fleet: Fleet, tmp_path: pathlib.Path) -> None:
    marker = tmp_path / "survived"
    command_id = fleet.send(
        "--instance-ids",
        *fleet.ids,
        "--max-concurrency",
        "1",
        "--parameters",
        f"commands=sleep 30; touch {marker}",
    )
    first = fleet.ids[0]
    wait_until(
        lambda: (
            fleet.ssm.get_command_invocation(CommandId=command_id, InstanceId=first)["Status"] == "InProgress"
        ),
        "the first node to start",
        timeout=20,
    )
    fleet.aws("ssm", "cancel-command", "--command-id", command_id)
    # Waiting ones end at once; the running one is Cancelling until its agent has killed it.
    now = {
        i["InstanceId"]: i["Status"]
        for i in fleet.ssm.list_command_invocations(CommandId=command_id)["CommandInvocations"]
    }
    assert [now[i] for i in fleet.ids[1:]] == ["Cancelled", "Cancelled"]
    assert now[first] in ("Cancelling", "Cancelled")
    command, invocations = fleet.finished(command_id, timeout=20)
    assert (command["Status"], command["StatusDetails"]) == ("Cancelled", "Cancelled")
    assert {i: invocations[i]["Status"] for i in fleet.ids} == dict.fromkeys(fleet.ids, "Cancelled")
    assert fleet.invocation(command_id, first)["ResponseCode"] == 137
    assert not marker.exists()


def test_output_goes_to_s3_and_cloudwatch_logs_in_aws_layout(fleet: Fleet) -> None:
    web = fleet.ids[:2]
    command_id = fleet.send(
        "--targets",
        "Key=tag:Role,Values=web",
        "--output-s3-bucket-name",
        BUCKET,
        "--output-s3-key-prefix",
        PREFIX,
        "--cloud-watch-output-config",
        "CloudWatchOutputEnabled=true",
        "--parameters",
        json.dumps({"commands": ["echo out-$((40+2))", "echo err-7 >&2"]}),
    )
    command, _ = fleet.finished(command_id)
    assert command["Status"] == "Success"
    assert command["CloudWatchOutputConfig"] == {
        "CloudWatchLogGroupName": GROUP,
        "CloudWatchOutputEnabled": True,
    }
    s3, logs = fleet.moto.client("s3"), fleet.moto.client("logs")
    for instance_id in web:
        key = f"{PREFIX}/{command_id}/{instance_id}/awsrunShellScript/0.awsrunShellScript"
        stream = f"{command_id}/{instance_id}/aws-runShellScript"

        def shipped(key: str = key, stream: str = stream) -> bool:
            in_s3 = s3_text(s3, BUCKET, f"{key}/stderr") is not None
            return in_s3 and log_messages(logs, GROUP, f"{stream}/stderr") == ["err-7"]

        wait_until(shipped, f"{key} in the bucket and {stream} in CloudWatch Logs", timeout=30)
        assert s3_text(s3, BUCKET, f"{key}/stdout") == "out-42\n"
        assert s3_text(s3, BUCKET, f"{key}/stderr") == "err-7\n"
        found = fleet.invocation(command_id, instance_id)
        assert found["StandardOutputUrl"] == f"{fleet.moto.endpoint}/{BUCKET}/{key}/stdout"
        assert log_messages(logs, GROUP, f"{stream}/stdout") == ["out-42"]


def openssm_run(fleet: Fleet, *args: str) -> subprocess.CompletedProcess[str]:
    argv = openssm_argv("run", *args, "--endpoint-url", fleet.server.endpoint, "--interval", "0.3")
    return subprocess.run(
        argv, env=fleet.server.aws_env(), capture_output=True, text=True, timeout=120, check=False
    )


def test_openssm_run_shows_each_node_and_exits_non_zero_when_one_failed(fleet: Fleet) -> None:
    good = openssm_run(
        fleet,
        "--targets",
        "Key=tag:Role,Values=web",
        "--parameters",
        "commands=echo fine-$((1+1))",
        "--show-output",
    )
    assert good.returncode == 0, good.stdout + good.stderr
    assert "Success" in good.stdout and "2/2 complete" in good.stdout
    for instance_id in fleet.ids[:2]:
        rows = [line.split() for line in good.stdout.splitlines() if line.startswith(instance_id)]
        assert len(rows) == 1, good.stdout
        assert rows[0][-3:] == ["Success", "Success", "0"]
    assert good.stdout.count("fine-2") == 2  # --show-output
    assert f"output of {fleet.ids[0]} (Success, exit code 0)" in good.stdout

    db = fleet.ids[2]
    bad = openssm_run(
        fleet,
        "--targets",
        "Key=tag-key,Values=Role",
        "--parameters",
        f"commands={fails_on(fleet.node(db), 4)}",
    )
    assert bad.returncode == 1, bad.stdout + bad.stderr
    by_node = {line.split()[0]: line.split() for line in bad.stdout.splitlines() if line.startswith("mi-")}
    assert sorted(by_node) == fleet.ids
    assert by_node[db][-3:] == ["Failed", "Failed", "4"]
    assert all(by_node[i][-3:] == ["Success", "Success", "0"] for i in fleet.ids[:2])

    queued = openssm_run(fleet, "--instance-ids", db, "--parameters", "commands=true", "--no-wait")
    assert queued.returncode == 0
    command_id = queued.stdout.strip()
    assert len(command_id) == 36 and fleet.finished(command_id)[0]["Status"] == "Success"

    refused = openssm_run(fleet, "--instance-ids", "mi-0000000000000000f", "--parameters", "commands=true")
    assert refused.returncode == 255 and "InvalidInstanceId" in refused.stderr


def test_openssm_run_on_a_terminal_redraws_the_table_as_nodes_finish(fleet: Fleet) -> None:
    argv = openssm_argv(
        "run",
        "--instance-ids",
        ",".join(fleet.ids),
        "--max-concurrency",
        "1",
        "--parameters",
        "commands=sleep 1",
        "--endpoint-url",
        fleet.server.endpoint,
        "--interval",
        "0.2",
    )
    child = pexpect.spawn(
        argv[0], argv[1:], env=fleet.server.aws_env(), dimensions=(30, 120), timeout=60, encoding="utf-8"
    )
    try:
        child.expect("InProgress")  # the live view while the first node runs
        child.expect(r"1/3 complete")
        child.expect(r"3/3 complete")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
