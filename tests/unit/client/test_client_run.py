"""``openssm run``: the SendCommand it builds from AWS CLI-style options, and how it shows a command."""

from __future__ import annotations

from typing import Any

import pytest
from rich.console import Console

from openssm.client.run import RunError, build_request, exit_code_of, exit_status, parse_target, render


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Key=tag:Role,Values=web,db", {"Key": "tag:Role", "Values": ["web", "db"]}),
        ("Key=tag-key,Values=Role", {"Key": "tag-key", "Values": ["Role"]}),
        (
            "Key=InstanceIds,Values=i-0123456789abcdef0",
            {"Key": "InstanceIds", "Values": ["i-0123456789abcdef0"]},
        ),
        ('{"Key": "tag:Env", "Values": ["prod"]}', {"Key": "tag:Env", "Values": ["prod"]}),
        ('[{"Key": "tag:Env", "Values": ["prod"]}]', {"Key": "tag:Env", "Values": ["prod"]}),
    ],
)
def test_targets_as_the_aws_cli_takes_them(text: str, expected: dict[str, Any]) -> None:
    assert parse_target(text) == expected


@pytest.mark.parametrize("text", ["Key=tag:Role", "Values=web", "{", "[1, 2]", "Key=,Values=x"])
def test_bad_targets_say_what_is_expected(text: str) -> None:
    with pytest.raises(RunError):
        parse_target(text)


def test_build_request_carries_every_option() -> None:
    request = build_request(
        targets=("Key=tag:Role,Values=web",),
        instance_ids=(),
        document_name="AWS-RunShellScript",
        parameters='{"commands": ["uptime", "df -h"], "executionTimeout": ["60"]}',
        comment="weekly",
        max_concurrency="10%",
        max_errors="1",
        timeout_seconds=30,
        output_s3_bucket_name="audit",
        output_s3_key_prefix="runs",
        cloud_watch_output_config="CloudWatchOutputEnabled=true,CloudWatchLogGroupName=/fleet",
    )
    assert request == {
        "DocumentName": "AWS-RunShellScript",
        "Targets": [{"Key": "tag:Role", "Values": ["web"]}],
        "Parameters": {"commands": ["uptime", "df -h"], "executionTimeout": ["60"]},
        "Comment": "weekly",
        "MaxConcurrency": "10%",
        "MaxErrors": "1",
        "TimeoutSeconds": 30,
        "OutputS3BucketName": "audit",
        "OutputS3KeyPrefix": "runs",
        "CloudWatchOutputConfig": {"CloudWatchOutputEnabled": True, "CloudWatchLogGroupName": "/fleet"},
    }
    plain = build_request(
        targets=(), instance_ids=("mi-1", "mi-2"), document_name="D", parameters="commands=id"
    )
    assert plain == {"DocumentName": "D", "InstanceIds": ["mi-1", "mi-2"], "Parameters": {"commands": ["id"]}}


def test_nodes_are_named_one_way() -> None:
    with pytest.raises(RunError):
        build_request(targets=(), instance_ids=(), document_name="D", parameters=None)
    with pytest.raises(RunError):
        build_request(
            targets=("Key=tag:a,Values=b",), instance_ids=("mi-1",), document_name="D", parameters=None
        )


def invocation(instance_id: str, status: str, *plugins: tuple[str, int]) -> dict[str, Any]:
    return {
        "InstanceId": instance_id,
        "InstanceName": "",
        "Status": status,
        "StatusDetails": status,
        "CommandPlugins": [{"Status": s, "ResponseCode": code} for s, code in plugins],
    }


def test_exit_code_is_the_first_failing_steps_or_the_last() -> None:
    assert exit_code_of(invocation("a", "Pending")) is None
    assert exit_code_of(invocation("a", "Success", ("Success", 0))) == 0
    assert exit_code_of(invocation("a", "Failed", ("Success", 0), ("Failed", 3))) == 3
    assert exit_code_of(invocation("a", "TimedOut", ("TimedOut", 137))) == 137
    assert exit_code_of(invocation("a", "TimedOut", ("TimedOut", -1))) is None


def test_exit_status_is_non_zero_when_any_node_did_not_succeed() -> None:
    success = {"Status": "Success"}
    assert exit_status(success, [invocation("a", "Success"), invocation("b", "Success")]) == 0
    assert exit_status({"Status": "Failed"}, [invocation("a", "Success"), invocation("b", "Failed")]) == 1
    assert exit_status({"Status": "Success"}, [invocation("a", "Success"), invocation("b", "TimedOut")]) == 1
    assert exit_status({"Status": "Success", "StatusDetails": "NoInstancesInTag"}, []) == 0


def test_the_view_shows_counts_statuses_and_exit_codes() -> None:
    command = {
        "CommandId": "0b8a5a2e-6a0e-4a4e-9d7f-0123456789ab",
        "Status": "InProgress",
        "StatusDetails": "InProgress",
        "TargetCount": 3,
        "CompletedCount": 2,
        "ErrorCount": 1,
        "DeliveryTimedOutCount": 0,
    }
    rows = [
        invocation("mi-00000000000000001", "Success", ("Success", 0)),
        invocation("mi-00000000000000002", "Failed", ("Failed", 3)),
        invocation("mi-00000000000000003", "Pending"),
    ]
    console = Console(record=True, width=120)
    console.print(render(command, rows))
    text = console.export_text()
    assert "0b8a5a2e-6a0e-4a4e-9d7f-0123456789ab" in text and "2/3 complete, errors: 1" in text
    lines = {line.split()[0]: line.split() for line in text.splitlines() if line.startswith("mi-")}
    assert lines["mi-00000000000000001"][1:] == ["Success", "Success", "0"]
    assert lines["mi-00000000000000002"][1:] == ["Failed", "Failed", "3"]
    assert lines["mi-00000000000000003"][1:] == ["Pending", "Pending"]
