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


OK, FAIL = ("Success", "Success"), ("Failed", "Failed")
EXEC_TIMEOUT, DELIVERY_TIMEOUT = ("TimedOut", "ExecutionTimedOut"), ("TimedOut", "DeliveryTimedOut")
UNDELIVERABLE, TERMINATED = ("Failed", "Undeliverable"), ("Cancelled", "Terminated")


@pytest.mark.parametrize(
    ("invocations", "cancel", "max_errors", "expected"),
    [
        ([("Pending", "Pending")], False, "0", ("Pending", "Pending", 0, 0, 0)),
        (
            [("Pending", "Pending"), ("InProgress", "InProgress")],
            False,
            "0",
            ("InProgress", "InProgress", 0, 0, 0),
        ),
        ([OK, OK], False, "0", ("Success", "Success", 2, 0, 0)),
        ([OK, FAIL], False, "0", ("Failed", "Failed", 2, 1, 0)),
        # Failures within MaxErrors: the command did not fail, but not everything succeeded.
        ([OK, FAIL], False, "1", ("Success", "Incomplete", 2, 1, 0)),
        ([OK, FAIL, FAIL], False, "50%", ("Failed", "Failed", 3, 2, 0)),  # 50 % of 3 allows 1
        ([OK, EXEC_TIMEOUT], False, "0", ("TimedOut", "ExecutionTimedOut", 2, 1, 0)),
        ([DELIVERY_TIMEOUT], False, "0", ("TimedOut", "DeliveryTimedOut", 1, 0, 1)),
        ([DELIVERY_TIMEOUT, DELIVERY_TIMEOUT], False, "5", ("TimedOut", "DeliveryTimedOut", 2, 0, 2)),
        ([OK, DELIVERY_TIMEOUT], False, "1", ("Success", "Incomplete", 2, 0, 1)),
        # AWS's examples: all undeliverable is Failed; undeliverable beside a success is not.
        ([UNDELIVERABLE, UNDELIVERABLE], False, "0", ("Failed", "Failed", 2, 0, 0)),
        ([UNDELIVERABLE, OK], False, "0", ("Success", "Incomplete", 2, 0, 0)),
        # Over MaxErrors: the waiting ones were terminated; they are not errors.
        ([FAIL, TERMINATED, TERMINATED], False, "0", ("Failed", "Failed", 3, 1, 0)),
        ([("InProgress", "InProgress")], True, "0", ("Cancelling", "Cancelling", 0, 0, 0)),
        ([("Cancelled", "Cancelled"), OK], True, "0", ("Cancelled", "Cancelled", 2, 0, 0)),
        ([], False, "0", ("Success", "NoInstancesInTag", 0, 0, 0)),
    ],
)
def test_summarise(
    invocations: list[tuple[str, str]],
    cancel: bool,
    max_errors: str,
    expected: tuple[str, str, int, int, int],
) -> None:
    summary = rc.summarise(invocations, cancel_requested=cancel, max_errors=max_errors)
    assert (
        summary.status,
        summary.status_details,
        summary.completed_count,
        summary.error_count,
        summary.delivery_timed_out_count,
    ) == expected
    assert summary.target_count == len(invocations)


@pytest.mark.parametrize(
    ("value", "targets", "minimum", "expected"),
    [
        ("10", 3, 1, 10),
        ("0", 3, 0, 0),
        ("10%", 50, 0, 5),  # AWS: 50 targets at 10 % stop at the sixth error
        ("10%", 3, 0, 0),
        ("10%", 3, 1, 1),  # a concurrency is never 0
        ("50%", 3, 1, 1),
        ("100%", 7, 1, 7),
        (None, 7, 1, 1),
    ],
)
def test_limit(value: str | None, targets: int, minimum: int, expected: int) -> None:
    assert rc.limit(value, targets, minimum=minimum) == expected


STATES = st.sampled_from(
    [
        ("Pending", "Pending", False),
        ("Pending", "Pending", True),
        ("InProgress", "InProgress", True),
        ("Cancelling", "Cancelling", True),
        ("Success", "Success", True),
        ("Failed", "Failed", True),
        ("TimedOut", "ExecutionTimedOut", True),
        ("TimedOut", "DeliveryTimedOut", False),
        ("Failed", "Undeliverable", True),
        ("Cancelled", "Terminated", False),
    ]
)


@given(
    states=st.lists(STATES, max_size=30),
    concurrency=st.one_of(st.integers(1, 40).map(str), st.integers(1, 100).map(lambda n: f"{n}%")),
    errors=st.one_of(st.integers(0, 40).map(str), st.integers(0, 100).map(lambda n: f"{n}%")),
)
def test_rollout_keeps_to_the_rate_controls(
    states: list[tuple[str, str, bool]], concurrency: str, errors: str
) -> None:
    invocations = [rc.InvocationState(f"mi-{i:017x}", *state) for i, state in enumerate(states)]
    plan = rc.plan_rollout(
        invocations, max_concurrency=concurrency, max_errors=errors, cancel_requested=False
    )
    waiting = [i.instance_id for i in invocations if i.status == "Pending" and not i.dispatched]
    running = sum(1 for i in invocations if i.dispatched and i.status not in rc.FINAL_STATUSES)
    failed = sum(1 for i in invocations if rc.counts_as_error(i.status, i.status_details))
    if failed > rc.limit(errors, len(states), minimum=0):
        assert plan.dispatch == () and list(plan.terminate) == waiting  # nothing more starts
    else:
        assert plan.terminate == ()
        assert list(plan.dispatch) == waiting[: len(plan.dispatch)]  # in target order
        room = rc.limit(concurrency, len(states), minimum=1) - running
        assert len(plan.dispatch) == max(0, min(room, len(waiting)))
    cancelled = rc.plan_rollout(
        invocations, max_concurrency=concurrency, max_errors=errors, cancel_requested=True
    )
    assert cancelled == rc.Rollout((), ())


def test_one_at_a_time_with_no_errors_allowed_stops_after_the_first_failure() -> None:
    """The reported bug: --max-concurrency 1 --max-errors 0 over two nodes ran a failing command on both."""
    first, second = "mi-00000000000000001", "mi-00000000000000002"
    fresh = [rc.InvocationState(i, "Pending", "Pending", False) for i in (first, second)]
    start = rc.plan_rollout(fresh, max_concurrency="1", max_errors="0", cancel_requested=False)
    assert start == rc.Rollout((first,), ())
    running = [rc.InvocationState(first, "InProgress", "InProgress", True), fresh[1]]
    assert rc.plan_rollout(
        running, max_concurrency="1", max_errors="0", cancel_requested=False
    ) == rc.Rollout((), ())
    failed = [rc.InvocationState(first, "Failed", "Failed", True), fresh[1]]
    assert rc.plan_rollout(failed, max_concurrency="1", max_errors="0", cancel_requested=False) == rc.Rollout(
        (), (second,)
    )
    succeeded = [rc.InvocationState(first, "Success", "Success", True), fresh[1]]
    assert rc.plan_rollout(
        succeeded, max_concurrency="1", max_errors="0", cancel_requested=False
    ) == rc.Rollout((second,), ())


def test_output_names_follow_aws_layouts() -> None:
    shell = rc.output_names(rc.RUN_SHELL_SCRIPT, 0, "runShellScript", rc.RUN_SHELL_SCRIPT_ACTION)
    assert (
        rc.s3_output_key("out/", COMMAND_ID, INSTANCE_ID, shell, "stdout")
        == f"out/{COMMAND_ID}/{INSTANCE_ID}/awsrunShellScript/0.awsrunShellScript/stdout"
    )
    assert rc.s3_output_key("", COMMAND_ID, INSTANCE_ID, shell, "stderr") == (
        f"{COMMAND_ID}/{INSTANCE_ID}/awsrunShellScript/0.awsrunShellScript/stderr"
    )
    assert rc.cloudwatch_stream(COMMAND_ID, INSTANCE_ID, shell, "stdout") == (
        f"{COMMAND_ID}/{INSTANCE_ID}/aws-runShellScript/stdout"
    )
    custom = rc.output_names("My-Document", 1, "CompileModel", rc.RUN_SHELL_SCRIPT_ACTION)
    assert rc.cloudwatch_stream(COMMAND_ID, INSTANCE_ID, custom, "stderr") == (
        f"{COMMAND_ID}/{INSTANCE_ID}/CompileModel/stderr"
    )
    assert rc.default_log_group(rc.RUN_SHELL_SCRIPT) == "/aws/ssm/AWS-RunShellScript"


def test_invocation_status_maps_agent_result_statuses() -> None:
    assert rc.invocation_status("Success") == "Success"
    assert rc.invocation_status("InProgress") == "InProgress"
    assert rc.invocation_status("SuccessAndReboot") == "InProgress"
    assert rc.invocation_status("TimedOut") == "TimedOut"
    assert rc.invocation_status("whatever") == "Failed"
