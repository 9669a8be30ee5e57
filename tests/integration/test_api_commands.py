"""Run Command API against a real server: targets, delivery time-outs, cancel, errors, the document."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import botocore.exceptions
import pytest
import sqlalchemy as sa
from tests.integration.api_harness import ApiServer, register_node

from openssm.store import instances
from openssm.store.tables import commands

SHELL = "AWS-RunShellScript"


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ApiServer, str, str]]:
    """Two registered nodes, neither connected: commands to them wait for delivery."""
    server = ApiServer(tmp_path_factory.mktemp("commands") / "data").start()
    try:
        ssm = server.client()
        activation = ssm.create_activation(IamRole="OpenSSMNodeRole", RegistrationLimit=2)
        web = register_node(server, activation["ActivationCode"], activation["ActivationId"], "c1")
        db = register_node(server, activation["ActivationCode"], activation["ActivationId"], "c2")

        async def tag(engine: Any) -> None:
            await instances.set_tags(engine, web.instance_id, {"Role": "web"})
            await instances.set_tags(engine, db.instance_id, {"Role": "db"})

        server.db(tag)
        yield server, web.instance_id, db.instance_id
    finally:
        server.stop()


def code(exc: pytest.ExceptionInfo[botocore.exceptions.ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def age_command(server: ApiServer, command_id: str, seconds: int) -> None:
    """Move a command's clock back, as if ``seconds`` had passed since it was sent."""

    async def work(engine: Any) -> None:
        shift = dt.timedelta(seconds=seconds)
        async with engine.begin() as conn:
            row = (await conn.execute(sa.select(commands).where(commands.c.command_id == command_id))).one()
            await conn.execute(
                sa.update(commands)
                .where(commands.c.command_id == command_id)
                .values(
                    requested_at=row.requested_at - shift,
                    delivery_deadline=row.delivery_deadline - shift,
                    expires_after=row.expires_after - shift,
                )
            )

    server.db(work)


def test_tag_targets_pick_matching_instances(system: tuple[ApiServer, str, str]) -> None:
    server, web, _db = system
    ssm = server.client()
    command = ssm.send_command(
        Targets=[{"Key": "tag:Role", "Values": ["web"]}],
        DocumentName=SHELL,
        Parameters={"commands": ["hostname"]},
        MaxConcurrency="10",
        MaxErrors="1",
        TimeoutSeconds=60,
    )["Command"]
    assert command["TargetCount"] == 1 and command["Status"] == "Pending"
    assert (command["MaxConcurrency"], command["MaxErrors"], command["TimeoutSeconds"]) == ("10", "1", 60)
    assert command["Parameters"] == {
        "commands": ["hostname"],
        "workingDirectory": [""],
        "executionTimeout": ["3600"],
    }
    invocations = ssm.list_command_invocations(CommandId=command["CommandId"])["CommandInvocations"]
    assert [i["InstanceId"] for i in invocations] == [web]
    assert invocations[0]["Status"] == "Pending"
    listed = ssm.list_commands(InstanceId=web)["Commands"]
    assert command["CommandId"] in [c["CommandId"] for c in listed]


def test_undelivered_command_times_out(system: tuple[ApiServer, str, str]) -> None:
    server, _web, db = system
    ssm = server.client()
    command_id = ssm.send_command(
        InstanceIds=[db], DocumentName=SHELL, Parameters={"commands": ["true"]}, TimeoutSeconds=30
    )["Command"]["CommandId"]
    pending = ssm.get_command_invocation(CommandId=command_id, InstanceId=db)
    assert (pending["Status"], pending["ResponseCode"], pending["ExecutionStartDateTime"]) == (
        "Pending",
        -1,
        "",
    )
    age_command(server, command_id, 31)
    found = ssm.get_command_invocation(CommandId=command_id, InstanceId=db)
    assert (found["Status"], found["StatusDetails"]) == ("TimedOut", "DeliveryTimedOut")
    (command,) = ssm.list_commands(CommandId=command_id)["Commands"]
    assert (command["Status"], command["StatusDetails"]) == ("TimedOut", "DeliveryTimedOut")
    assert command["DeliveryTimedOutCount"] == 1 and command["CompletedCount"] == 1
    assert (
        ssm.list_commands(Filters=[{"key": "Status", "value": "TimedOut"}])["Commands"][0]["CommandId"]
        == command_id
    )


def test_invocations_waiting_for_a_slot_time_out_undelivered_too(system: tuple[ApiServer, str, str]) -> None:
    """--timeout-seconds is the delivery timeout: what has not reached its node by then never runs,
    whether it was sent (to an offline node) or still waited for a concurrency slot."""
    server, web, db = system
    sent = server.aws(
        "ssm",
        "send-command",
        "--instance-ids",
        web,
        db,
        "--document-name",
        SHELL,
        "--parameters",
        "commands=true",
        "--timeout-seconds",
        "30",
        "--max-concurrency",
        "1",
        "--cloud-watch-output-config",
        "CloudWatchOutputEnabled=true,CloudWatchLogGroupName=/fleet/runs",
    )["Command"]
    assert (sent["TimeoutSeconds"], sent["MaxConcurrency"], sent["MaxErrors"]) == (30, "1", "0")
    assert sent["CloudWatchOutputConfig"] == {
        "CloudWatchLogGroupName": "/fleet/runs",
        "CloudWatchOutputEnabled": True,
    }
    command_id = sent["CommandId"]
    age_command(server, command_id, 31)
    [command] = server.aws("ssm", "list-commands", "--command-id", command_id)["Commands"]
    assert (command["Status"], command["StatusDetails"]) == ("TimedOut", "DeliveryTimedOut")
    assert (command["DeliveryTimedOutCount"], command["ErrorCount"], command["CompletedCount"]) == (2, 0, 2)
    invocations = server.aws("ssm", "list-command-invocations", "--command-id", command_id)[
        "CommandInvocations"
    ]
    assert {(i["Status"], i["StatusDetails"]) for i in invocations} == {("TimedOut", "DeliveryTimedOut")}
    # A Status filter matches StatusDetails too: TimedOut takes both kinds, the details one kind.
    for status, found in (
        ("TimedOut", [command_id]),
        ("DeliveryTimedOut", [command_id]),
        ("ExecutionTimedOut", []),
    ):
        filters = f"key=Status,value={status}"
        listed = server.aws("ssm", "list-commands", "--command-id", command_id, "--filters", filters)
        assert [c["CommandId"] for c in listed["Commands"]] == found


def test_cancel_before_delivery_ends_at_once(system: tuple[ApiServer, str, str]) -> None:
    server, web, db = system
    ssm = server.client()
    command_id = ssm.send_command(
        InstanceIds=[web, db], DocumentName=SHELL, Parameters={"commands": ["true"]}
    )["Command"]["CommandId"]
    ssm.cancel_command(CommandId=command_id, InstanceIds=[db])
    assert ssm.get_command_invocation(CommandId=command_id, InstanceId=db)["Status"] == "Cancelled"
    assert ssm.get_command_invocation(CommandId=command_id, InstanceId=web)["Status"] == "Pending"
    ssm.cancel_command(CommandId=command_id)
    (command,) = ssm.list_commands(CommandId=command_id)["Commands"]
    assert command["Status"] == "Cancelled"
    with pytest.raises(botocore.exceptions.ClientError) as unknown:
        ssm.cancel_command(CommandId="00000000-0000-4000-8000-000000000000")
    assert code(unknown) == "InvalidCommandId"


def test_requests_refused_in_aws_words(system: tuple[ApiServer, str, str]) -> None:
    server, web, _db = system
    ssm = server.client()
    with pytest.raises(botocore.exceptions.ClientError) as both:
        ssm.send_command(
            InstanceIds=[web],
            Targets=[{"Key": "InstanceIds", "Values": [web]}],
            DocumentName=SHELL,
            Parameters={"commands": ["id"]},
        )
    assert code(both) == "ValidationException"
    with pytest.raises(botocore.exceptions.ClientError) as session_document:
        ssm.send_command(InstanceIds=[web], DocumentName="AWS-StartPortForwardingSession")
    assert code(session_document) == "InvalidDocument"
    with pytest.raises(botocore.exceptions.ClientError) as bad_timeout:
        ssm.send_command(
            InstanceIds=[web], DocumentName=SHELL, Parameters={"commands": ["id"], "executionTimeout": ["0"]}
        )
    assert code(bad_timeout) == "InvalidParameters"
    with pytest.raises(botocore.exceptions.ClientError) as unknown_parameter:
        ssm.send_command(
            InstanceIds=[web], DocumentName=SHELL, Parameters={"commands": ["id"], "nope": ["x"]}
        )
    assert code(unknown_parameter) == "InvalidParameters"
    with pytest.raises(botocore.exceptions.ClientError) as bad_key:
        ssm.send_command(Targets=[{"Key": "resource-groups:Name", "Values": ["x"]}], DocumentName=SHELL)
    assert code(bad_key) == "InvalidTarget"
    with pytest.raises(botocore.exceptions.ClientError) as not_a_session:
        ssm.start_session(Target=web, DocumentName=SHELL)
    assert code(not_a_session) == "InvalidDocument"


def test_run_shell_script_is_a_builtin_command_document(system: tuple[ApiServer, str, str]) -> None:
    server, _web, _db = system
    ssm = server.client()
    document = ssm.describe_document(Name=SHELL)["Document"]
    assert (document["DocumentType"], document["SchemaVersion"], document["Owner"]) == (
        "Command",
        "2.2",
        "Amazon",
    )
    assert {p["Name"] for p in document["Parameters"]} == {"commands", "workingDirectory", "executionTimeout"}
    listed = ssm.list_documents(Filters=[{"Key": "DocumentType", "Values": ["Command"]}])[
        "DocumentIdentifiers"
    ]
    assert [d["Name"] for d in listed] == [SHELL]
