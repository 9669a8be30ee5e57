"""What the gateway sends for a command (agent_job) and records from a SendReply."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

from openssm.gateway.jobs import agent_job_frame, cancel_job_frame, reply_values
from openssm.protocol import run_command as rc
from openssm.protocol.frames import MessageType, decode
from openssm.store.commands import CommandRow

COMMAND_ID = "0b8a5a2e-6a0e-4a4e-9d7f-0123456789ab"
INSTANCE_ID = "mi-0123456789abcdef0"
NOW = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def command_row() -> CommandRow:
    return CommandRow(
        command_id=COMMAND_ID,
        document_name=rc.RUN_SHELL_SCRIPT,
        document_version="$DEFAULT",
        document_content=rc.builtin_command_documents()[rc.RUN_SHELL_SCRIPT],
        parameters={"commands": ["echo hi"], "workingDirectory": [""], "executionTimeout": ["60"]},
        comment=None,
        instance_ids=[INSTANCE_ID],
        targets=[],
        requested_at=NOW,
        delivery_deadline=NOW + dt.timedelta(minutes=1),
        expires_after=NOW + dt.timedelta(minutes=2),
        timeout_seconds=60,
        max_concurrency="50",
        max_errors="0",
        output_s3_region="us-east-1",
        output_s3_bucket_name="",
        output_s3_key_prefix="",
        cloudwatch_log_group_name=None,
        cloudwatch_output_enabled=False,
        cancel_requested=False,
        owner_arn="arn:aws:iam::123456789012:user/admin",
    )


def test_agent_job_frame_carries_the_send_command_payload() -> None:
    frame = decode(agent_job_frame(command_row(), INSTANCE_ID))
    assert frame.message_type == MessageType.AGENT_JOB
    body = json.loads(bytes(frame.payload))
    assert body["JobId"] == f"aws.ssm.{COMMAND_ID}.{INSTANCE_ID}"
    assert body["Topic"] == "aws.ssm.sendCommand"
    assert body["SchemaVersion"] == 1
    parsed = rc.parse_send_command(body["Content"])
    assert parsed.steps[0].script == "echo hi"
    assert parsed.steps[0].timeout_seconds == 60
    assert json.loads(body["Content"])["Parameters"]["executionTimeout"] == "60"


def test_agent_job_frame_never_names_the_output_bucket() -> None:
    """The server ships the output; an agent told of the bucket would upload it itself."""
    row = dataclasses.replace(
        command_row(),
        output_s3_bucket_name="audit",
        cloudwatch_output_enabled=True,
        cloudwatch_log_group_name="g",
    )
    content = json.loads(json.loads(bytes(decode(agent_job_frame(row, INSTANCE_ID)).payload))["Content"])
    assert content["OutputS3BucketName"] == "" and content["OutputS3KeyPrefix"] == ""
    assert content["CloudWatchOutputEnabled"] == "false" and content["CloudWatchLogGroupName"] == ""
    assert row.log_group == "g"
    assert dataclasses.replace(row, cloudwatch_log_group_name=None).log_group == "/aws/ssm/AWS-RunShellScript"
    assert dataclasses.replace(row, cloudwatch_output_enabled=False).log_group is None


def test_cancel_job_names_the_job_to_stop() -> None:
    body = json.loads(bytes(decode(cancel_job_frame(COMMAND_ID, INSTANCE_ID)).payload))
    assert body["Topic"] == "aws.ssm.cancelCommand"
    own_command, own_instance = rc.parse_job_id(body["JobId"])
    assert own_instance == INSTANCE_ID and own_command != COMMAND_ID
    assert rc.parse_cancel_command(body["Content"]) == f"aws.ssm.{COMMAND_ID}.{INSTANCE_ID}"


def test_reply_values_for_in_progress_and_final_replies() -> None:
    progress = reply_values(rc.SendReply("InProgress", ()), NOW)
    assert progress == {"status": "InProgress", "status_details": "InProgress", "started_at": NOW}
    step = rc.StepResult(
        "runShellScript",
        "aws:runShellScript",
        "Failed",
        3,
        "out\n",
        "err\n",
        "2026-01-02T03:04:04.000Z",
        "2026-01-02T03:04:05.000Z",
    )
    final = reply_values(rc.SendReply("Failed", (step,)), NOW)
    assert final["status"] == "Failed" and final["response_code"] == 3
    assert (final["standard_output"], final["standard_error"]) == ("out\n", "err\n")
    assert final["ended_at"] == NOW
    assert final["started_at"] == dt.datetime(2026, 1, 2, 3, 4, 4, tzinfo=dt.UTC)
    assert final["plugins"][0]["name"] == "aws:runShellScript"
    assert final["plugins"][0]["output"] == "out\n\n----------ERROR-------\nerr\n"
    timed_out = reply_values(rc.SendReply("TimedOut", ()), NOW)
    assert timed_out["status_details"] == "ExecutionTimedOut" and timed_out["response_code"] == -1
