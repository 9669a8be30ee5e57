"""Run Command payloads: SendCommand (service → agent), SendReply (agent → service), statuses."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openssm.protocol import run_command as rc
from openssm.protocol.documents import validate_parameters

COMMAND_ID = "0b8a5a2e-6a0e-4a4e-9d7f-0123456789ab"
INSTANCE_ID = "mi-0123456789abcdef0"


def shell_payload(parameters: dict[str, object]) -> str:
    document = rc.builtin_command_documents()[rc.RUN_SHELL_SCRIPT]
    return rc.send_command_payload(
        command_id=COMMAND_ID,
        document_name=rc.RUN_SHELL_SCRIPT,
        document_content=document,
        parameters=parameters,
    )


def test_send_command_payload_has_the_fields_the_agent_reads() -> None:
    payload = json.loads(shell_payload({"commands": ["echo hi"]}))
    assert payload["CommandId"] == COMMAND_ID
    assert payload["DocumentName"] == "AWS-RunShellScript"
    assert payload["DocumentContent"]["schemaVersion"] == "2.2"
    assert payload["DocumentContent"]["mainSteps"][0]["action"] == "aws:runShellScript"
    assert payload["DocumentContent"]["mainSteps"][0]["inputs"]["runCommand"] == "{{ commands }}"
    assert payload["Parameters"] == {"commands": ["echo hi"]}
    assert {"OutputS3BucketName", "OutputS3KeyPrefix", "CloudWatchOutputEnabled"} <= payload.keys()


def test_parse_send_command_substitutes_lists_and_defaults() -> None:
    parsed = rc.parse_send_command(shell_payload({"commands": ["cd /", "ls"], "executionTimeout": "5"}))
    assert parsed.command_id == COMMAND_ID
    (step,) = parsed.steps
    assert step.name == "runShellScript"
    assert step.script == "cd /\nls"
    assert step.working_directory == ""  # the document's default
    assert step.timeout_seconds == 5


def test_agent_parameter_values_keep_string_lists_as_lists() -> None:
    document = rc.builtin_command_documents()[rc.RUN_SHELL_SCRIPT]
    validated = validate_parameters(document, {"commands": ["a", "b"]})
    assert rc.agent_parameter_values(document, validated) == {
        "commands": ["a", "b"],
        "workingDirectory": "",
        "executionTimeout": "3600",
    }


def test_builtin_document_rejects_a_bad_execution_timeout() -> None:
    document = rc.builtin_command_documents()[rc.RUN_SHELL_SCRIPT]
    with pytest.raises(ValueError, match="executionTimeout"):
        validate_parameters(document, {"commands": ["id"], "executionTimeout": ["0"]})
    with pytest.raises(ValueError, match="commands"):
        validate_parameters(document, {})


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[]", "JSON object"),
        ("{", "not JSON"),
        ('{"CommandId": "x", "DocumentContent": {"schemaVersion": "1.2"}}', "2.2"),
        (
            '{"CommandId":"x","DocumentContent":{"schemaVersion":"2.2","mainSteps":[{"action":"aws:runPowerShellScript"}]}}',
            "not supported",
        ),
        ('{"DocumentContent": {}}', "CommandId"),
    ],
)
def test_parse_send_command_refuses_what_it_cannot_run(content: str, message: str) -> None:
    with pytest.raises(rc.RunCommandError, match=message):
        rc.parse_send_command(content)


@given(st.uuids(), st.from_regex(r"mi-[0-9a-f]{17}", fullmatch=True))
def test_job_id_round_trips(command: object, instance: str) -> None:
    assert rc.parse_job_id(rc.job_id(str(command), instance)) == (str(command), instance)


@pytest.mark.parametrize(
    "bad", ["", "aws.ssm.", "aws.ssm.not-a-uuid.mi-1", f"x.ssm.{COMMAND_ID}.{INSTANCE_ID}"]
)
def test_parse_job_id_refuses_other_shapes(bad: str) -> None:
    with pytest.raises(rc.RunCommandError):
        rc.parse_job_id(bad)


def test_cancel_payload_round_trips() -> None:
    target = rc.job_id(COMMAND_ID, INSTANCE_ID)
    assert rc.parse_cancel_command(rc.cancel_command_payload(target)) == target


@given(st.text(max_size=30_000), st.text(max_size=10_000), st.integers(-255, 255))
def test_send_reply_round_trips_within_aws_limits(stdout: str, stderr: str, code: int) -> None:
    step = rc.StepResult("runShellScript", "aws:runShellScript", "Failed", code, stdout, stderr, "t0", "t1")
    content = rc.send_reply_payload(
        document_status="Failed", steps=[step], date_time="t1", agent_version="3.3.0.0"
    )
    reply = rc.parse_send_reply(content)
    assert reply.document_status == "Failed"
    (parsed,) = reply.steps
    assert parsed.code == code
    assert parsed.standard_output == stdout[: rc.MAX_STDOUT_CHARS]
    assert parsed.standard_error == stderr[: rc.MAX_STDERR_CHARS]
    body = json.loads(content)["runtimeStatus"]["runShellScript"]
    assert len(body["output"]) <= rc.MAX_PLUGIN_OUTPUT_CHARS
    assert body["name"] == "aws:runShellScript"


def test_parse_send_reply_reads_the_agents_sample_shape() -> None:
    """The shape in amazon-ssm-agent's test data: only ``output``, stderr after the separator."""
    content = json.dumps(
        {
            "additionalInfo": {"agent": {"lang": "en-US"}, "dateTime": "2015-07-09T23:23:40.023Z"},
            "documentStatus": "Success",
            "documentTraceOutput": "",
            "runtimeStatus": {
                "step2": {
                    "code": 0,
                    "name": "aws:runShellScript",
                    "status": "Success",
                    "output": "out\n----------ERROR-------\nerr",
                    "startDateTime": "2015-07-09T23:23:39.019Z",
                    "endDateTime": "2015-07-09T23:23:39.023Z",
                }
            },
        }
    )
    (step,) = rc.parse_send_reply(content).steps
    assert (step.step_name, step.standard_output, step.standard_error) == ("step2", "out", "err")


def test_parse_send_reply_refuses_wrong_types() -> None:
    with pytest.raises(rc.RunCommandError):
        rc.parse_send_reply('{"documentStatus": "Success", "runtimeStatus": {"a": {"code": "zero"}}}')
    with pytest.raises(rc.RunCommandError, match="exceeds"):
        rc.parse_send_reply("x" * (rc.MAX_PAYLOAD_CHARS + 1))


@pytest.mark.parametrize(
    ("invocations", "cancel", "expected"),
    [
        ([("Pending", "Pending")], False, ("Pending", 0, 0, 0)),
        ([("Pending", "Pending"), ("InProgress", "InProgress")], False, ("InProgress", 0, 0, 0)),
        ([("Success", "Success"), ("Success", "Success")], False, ("Success", 2, 0, 0)),
        ([("Success", "Success"), ("Failed", "Failed")], False, ("Failed", 2, 1, 0)),
        ([("TimedOut", "DeliveryTimedOut")], False, ("TimedOut", 1, 0, 1)),
        ([("InProgress", "InProgress")], True, ("Cancelling", 0, 0, 0)),
        ([("Cancelled", "Cancelled"), ("Success", "Success")], True, ("Cancelled", 2, 0, 0)),
        ([], False, ("Success", 0, 0, 0)),
    ],
)
def test_summarise(
    invocations: list[tuple[str, str]], cancel: bool, expected: tuple[str, int, int, int]
) -> None:
    summary = rc.summarise(invocations, cancel_requested=cancel)
    assert (
        summary.status,
        summary.completed_count,
        summary.error_count,
        summary.delivery_timed_out_count,
    ) == expected
    assert summary.target_count == len(invocations)


def test_invocation_status_maps_agent_result_statuses() -> None:
    assert rc.invocation_status("Success") == "Success"
    assert rc.invocation_status("InProgress") == "InProgress"
    assert rc.invocation_status("SuccessAndReboot") == "InProgress"
    assert rc.invocation_status("TimedOut") == "TimedOut"
    assert rc.invocation_status("whatever") == "Failed"
