"""Run Command over the control channel (``session-manager-protocol.md`` §4.3), sans-I/O.

``agent_job`` carries, as its ``Content``, the payload MDS would deliver for a command: a
*SendCommand* payload (``DocumentName``, ``CommandId``, ``DocumentContent`` with ``{{ }}`` still in
place, ``Parameters``, ``OutputS3…``) or, on a cancel topic, ``{"CancelMessageId": <job id>}``. The
job id is MDS's message id, ``aws.ssm.<CommandId>.<InstanceId>``: the agent takes the command id
from it. The agent answers with ``agent_job_reply`` whose ``content`` is a *SendReply* payload:
``documentStatus``, ``runtimeStatus`` (per step: status, code, output, standardOutput/Error, times)
and ``additionalInfo``. This module builds and parses both, defines the built-in Command document
``AWS-RunShellScript`` and the status vocabulary the API reports.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from openssm.errors import OpenSSMError

SEND_COMMAND_TOPIC: Final = "aws.ssm.sendCommand"
CANCEL_COMMAND_TOPIC: Final = "aws.ssm.cancelCommand"
JOB_ID_PREFIX: Final = "aws.ssm."

# What a SendReply carries per step (the agent truncates; GetCommandInvocation shows these limits).
MAX_STDOUT_CHARS: Final = 24_000
MAX_STDERR_CHARS: Final = 8_000
MAX_PLUGIN_OUTPUT_CHARS: Final = 2_500
MAX_PAYLOAD_CHARS: Final = 120_000
ERROR_SEPARATOR: Final = "\n----------ERROR-------\n"

RUN_SHELL_SCRIPT: Final = "AWS-RunShellScript"
RUN_SHELL_SCRIPT_ACTION: Final = "aws:runShellScript"
DEFAULT_EXECUTION_TIMEOUT: Final = 3600

EXECUTION_TIMED_OUT: Final = "ExecutionTimedOut"
DELIVERY_TIMED_OUT: Final = "DeliveryTimedOut"
UNDELIVERABLE: Final = "Undeliverable"
TERMINATED: Final = "Terminated"  # Cancelled by the service: the command went over MaxErrors
INCOMPLETE: Final = "Incomplete"
NO_INSTANCES_IN_TAG: Final = "NoInstancesInTag"
# StatusDetails that end an invocation without counting against MaxErrors (AWS: "Understanding
# command statuses"); Failed and ExecutionTimedOut count.
NOT_ERRORS: Final = frozenset(
    {DELIVERY_TIMED_OUT, UNDELIVERABLE, TERMINATED, "InvalidPlatform", "AccessDenied"}
)
# The exit code AWS's agent reports on Linux for a step it killed (timeout or cancel): 128 + SIGKILL.
STOPPED_EXIT_CODE: Final = 137
DEFAULT_MAX_CONCURRENCY: Final = "50"
DEFAULT_MAX_ERRORS: Final = "0"

# Invocation statuses (API) and the StatusDetails AWS shows with them.
PENDING: Final = "Pending"
IN_PROGRESS: Final = "InProgress"
SUCCESS: Final = "Success"
FAILED: Final = "Failed"
TIMED_OUT: Final = "TimedOut"
CANCELLING: Final = "Cancelling"
CANCELLED: Final = "Cancelled"
FINAL_STATUSES: Final = frozenset({SUCCESS, FAILED, TIMED_OUT, CANCELLED})
DETAILS: Final = {
    PENDING: "Pending",
    IN_PROGRESS: "InProgress",
    SUCCESS: "Success",
    FAILED: "Failed",
    TIMED_OUT: EXECUTION_TIMED_OUT,
    CANCELLING: "Cancelling",
    CANCELLED: "Cancelled",
}

_JOB_ID: Final = re.compile(r"aws\.ssm\.([0-9a-fA-F-]{36})\.([A-Za-z0-9-]{1,64})")

_RUN_SHELL_SCRIPT_DOCUMENT: Final[dict[str, Any]] = {
    "schemaVersion": "2.2",
    "description": "Run a shell script or specify the commands to run.",
    "parameters": {
        "commands": {
            "type": "StringList",
            "description": "(Required) Specify a shell script or a command to run.",
            "minItems": 1,
            "displayType": "textarea",
        },
        "workingDirectory": {
            "type": "String",
            "default": "",
            "description": "(Optional) The path to the working directory on your instance.",
            "maxChars": 4096,
        },
        "executionTimeout": {
            "type": "String",
            "default": str(DEFAULT_EXECUTION_TIMEOUT),
            "description": "(Optional) The time in seconds for a command to complete before it is "
            "considered to have failed. Default is 3600 (1 hour). Maximum is 172800 (48 hours).",
            "allowedPattern": "([1-9][0-9]{0,4})|(1[0-6][0-9]{4})|(17[0-1][0-9]{3})|(172[0-7][0-9]{2})|(172800)",
        },
    },
    "mainSteps": [
        {
            "action": RUN_SHELL_SCRIPT_ACTION,
            "name": "runShellScript",
            "inputs": {
                "runCommand": "{{ commands }}",
                "workingDirectory": "{{ workingDirectory }}",
                "timeoutSeconds": "{{ executionTimeout }}",
            },
        }
    ],
}


def builtin_command_documents() -> dict[str, dict[str, Any]]:
    """The AWS-owned Command documents OpenSSM runs, by name (fresh copies)."""
    return {RUN_SHELL_SCRIPT: copy.deepcopy(_RUN_SHELL_SCRIPT_DOCUMENT)}


class RunCommandError(OpenSSMError, ValueError):
    """A Run Command payload that is malformed or names something we cannot run."""


def job_id(command_id: str, instance_id: str) -> str:
    return f"{JOB_ID_PREFIX}{command_id}.{instance_id}"


def parse_job_id(value: str) -> tuple[str, str]:
    """(command id, instance id) from ``aws.ssm.<CommandId>.<InstanceId>``."""
    match = _JOB_ID.fullmatch(value)
    if match is None:
        raise RunCommandError(f"job id {value[:120]!r} is not aws.ssm.<CommandId>.<InstanceId>")
    return match.group(1), match.group(2)


def agent_parameter_values(document: Mapping[str, Any], validated: Mapping[str, list[str]]) -> dict[str, Any]:
    """Parameters as MDS sends them: lists for StringList/MapList parameters, one string otherwise."""
    definitions = document.get("parameters") or {}
    result: dict[str, Any] = {}
    for name, values in validated.items():
        kind = definitions.get(name, {}).get("type") if isinstance(definitions, dict) else None
        result[name] = list(values) if kind in ("StringList", "MapList") else (values[0] if values else "")
    return result


def send_command_payload(
    *,
    command_id: str,
    document_name: str,
    document_content: Mapping[str, Any],
    parameters: Mapping[str, Any],
    output_s3_bucket_name: str = "",
    output_s3_key_prefix: str = "",
) -> str:
    """The SendCommand payload JSON (``agent_job`` Content)."""
    return json.dumps(
        {
            "Parameters": dict(parameters),
            "DocumentContent": dict(document_content),
            "CommandId": command_id,
            "DocumentName": document_name,
            "OutputS3KeyPrefix": output_s3_key_prefix,
            "OutputS3BucketName": output_s3_bucket_name,
            "CloudWatchLogGroupName": "",
            "CloudWatchOutputEnabled": "false",
        },
        separators=(",", ":"),
    )


def cancel_command_payload(target_job_id: str) -> str:
    return json.dumps({"CancelMessageId": target_job_id}, separators=(",", ":"))


def _object(text: str, what: str) -> dict[str, Any]:
    if len(text) > MAX_PAYLOAD_CHARS:
        raise RunCommandError(f"{what} exceeds {MAX_PAYLOAD_CHARS} characters")
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise RunCommandError(f"{what} is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise RunCommandError(f"{what} must be a JSON object")
    return value


def _get(obj: Mapping[str, Any], key: str) -> Any:
    """Go's encoding/json: exact key, else a case-insensitive match."""
    if key in obj:
        return obj[key]
    folded = key.casefold()
    for actual, value in obj.items():
        if actual.casefold() == folded:
            return value
    return None


def _text(obj: Mapping[str, Any], key: str, what: str) -> str:
    value = _get(obj, key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise RunCommandError(f"{what}: {key} must be a string")
    return value


@dataclasses.dataclass(frozen=True, slots=True)
class ShellStep:
    """One ``aws:runShellScript`` step, parameters substituted."""

    name: str
    script: str
    working_directory: str
    timeout_seconds: int


@dataclasses.dataclass(frozen=True, slots=True)
class SendCommand:
    command_id: str
    document_name: str
    steps: tuple[ShellStep, ...]


def _substituted(value: Any, parameters: Mapping[str, Any]) -> Any:
    """``{{ name }}`` replaced: a string that is only a placeholder takes the value as-is (a list stays
    a list), placeholders inside longer strings take the text form."""
    if isinstance(value, str):
        whole = re.fullmatch(r"\{\{\s*([A-Za-z0-9_.\-]+)\s*\}\}", value)
        if whole and whole.group(1) in parameters:
            return parameters[whole.group(1)]

        def text(match: re.Match[str]) -> str:
            found = parameters.get(match.group(1))
            if found is None:
                return match.group(0)
            return "\n".join(map(str, found)) if isinstance(found, list) else str(found)

        return re.sub(r"\{\{\s*([A-Za-z0-9_.\-]+)\s*\}\}", text, value)
    if isinstance(value, list):
        return [_substituted(item, parameters) for item in value]
    if isinstance(value, dict):
        return {key: _substituted(item, parameters) for key, item in value.items()}
    return value


def _script(run_command: Any, what: str) -> str:
    if isinstance(run_command, str):
        return run_command
    if isinstance(run_command, list) and all(isinstance(line, str) for line in run_command):
        return "\n".join(run_command)
    raise RunCommandError(f"{what}: runCommand must be a string or a list of strings")


def _timeout(value: Any, what: str) -> int:
    if value in (None, ""):
        return DEFAULT_EXECUTION_TIMEOUT
    try:
        seconds = int(str(value))
    except ValueError as exc:
        raise RunCommandError(f"{what}: timeoutSeconds {value!r} is not a number") from exc
    if not 1 <= seconds <= 172_800:
        raise RunCommandError(f"{what}: timeoutSeconds {seconds} is outside 1..172800")
    return seconds


def _parameter_defaults(content: Mapping[str, Any]) -> dict[str, Any]:
    definitions = content.get("parameters")
    if not isinstance(definitions, dict):
        return {}
    return {
        name: definition["default"]
        for name, definition in definitions.items()
        if isinstance(definition, dict) and "default" in definition
    }


def parse_send_command(content: str) -> SendCommand:
    """The steps to run from a SendCommand payload (schemaVersion 2.2, ``aws:runShellScript`` only)."""
    payload = _object(content, "SendCommand payload")
    command_id = _text(payload, "CommandId", "SendCommand payload")
    if not command_id:
        raise RunCommandError("SendCommand payload: CommandId is missing")
    document = _get(payload, "DocumentContent")
    if not isinstance(document, dict):
        raise RunCommandError("SendCommand payload: DocumentContent must be an object")
    given = _get(payload, "Parameters") or {}
    if not isinstance(given, dict):
        raise RunCommandError("SendCommand payload: Parameters must be an object")
    parameters = {**_parameter_defaults(document), **given}
    steps = _get(document, "mainSteps")
    if _get(document, "schemaVersion") != "2.2" or not isinstance(steps, list) or not steps:
        raise RunCommandError("only schemaVersion 2.2 documents with mainSteps are supported")
    parsed: list[ShellStep] = []
    for index, step in enumerate(steps):
        what = f"mainSteps[{index}]"
        if not isinstance(step, dict):
            raise RunCommandError(f"{what} must be an object")
        action = _text(step, "action", what)
        if action != RUN_SHELL_SCRIPT_ACTION:
            raise RunCommandError(
                f"{what}: action {action!r} is not supported (only {RUN_SHELL_SCRIPT_ACTION})"
            )
        inputs = _substituted(_get(step, "inputs") or {}, parameters)
        if not isinstance(inputs, dict):
            raise RunCommandError(f"{what}: inputs must be an object")
        working_directory = inputs.get("workingDirectory") or ""
        if not isinstance(working_directory, str):
            raise RunCommandError(f"{what}: workingDirectory must be a string")
        parsed.append(
            ShellStep(
                name=_text(step, "name", what) or f"step{index + 1}",
                script=_script(inputs.get("runCommand"), what),
                working_directory=working_directory,
                timeout_seconds=_timeout(inputs.get("timeoutSeconds"), what),
            )
        )
    return SendCommand(command_id, _text(payload, "DocumentName", "SendCommand payload"), tuple(parsed))


def parse_cancel_command(content: str) -> str:
    """The job id a cancelCommand payload names."""
    payload = _object(content, "CancelCommand payload")
    target = _text(payload, "CancelMessageId", "CancelCommand payload")
    if not target:
        raise RunCommandError("CancelCommand payload: CancelMessageId is missing")
    return target


# -- SendReply ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class StepResult:
    """What one step reports: its status (a ResultStatus), exit code and output."""

    step_name: str
    action: str
    status: str
    code: int
    standard_output: str
    standard_error: str
    start: str  # ISO-8601 UTC with milliseconds
    end: str


def combined_output(stdout: str, stderr: str) -> str:
    """The short ``output`` field: stdout, then stderr after AWS's separator, cut to 2500 characters."""
    text = stdout + (ERROR_SEPARATOR + stderr if stderr else "")
    return text[:MAX_PLUGIN_OUTPUT_CHARS]


def send_reply_payload(
    *,
    document_status: str,
    steps: Sequence[StepResult],
    date_time: str,
    agent_version: str,
    run_id: str = "",
) -> str:
    """The SendReply payload JSON (``agent_job_reply`` content); output cut to AWS's limits."""
    counts: dict[str, int] = {}
    runtime: dict[str, Any] = {}
    for step in steps:
        counts[step.status] = counts.get(step.status, 0) + 1
        stdout = step.standard_output[:MAX_STDOUT_CHARS]
        stderr = step.standard_error[:MAX_STDERR_CHARS]
        runtime[step.step_name] = {
            "status": step.status,
            "code": step.code,
            "name": step.action,
            "output": combined_output(stdout, stderr),
            "startDateTime": step.start,
            "endDateTime": step.end,
            "outputS3BucketName": "",
            "outputS3KeyPrefix": "",
            "stepName": step.step_name,
            "standardOutput": stdout,
            "standardError": stderr,
        }
    return json.dumps(
        {
            "additionalInfo": {
                "agent": {
                    "lang": "en-US",
                    "name": "amazon-ssm-agent",
                    "os": "",
                    "osver": "1",
                    "ver": agent_version,
                },
                "dateTime": date_time,
                "runId": run_id,
                "runtimeStatusCounts": counts,
            },
            "documentStatus": document_status,
            "documentTraceOutput": "",
            "runtimeStatus": runtime,
        },
        separators=(",", ":"),
    )


@dataclasses.dataclass(frozen=True, slots=True)
class SendReply:
    document_status: str
    steps: tuple[StepResult, ...]


def _int(obj: Mapping[str, Any], key: str, what: str) -> int:
    value = _get(obj, key)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise RunCommandError(f"{what}: {key} must be an integer")
    return value


def parse_send_reply(content: str) -> SendReply:
    payload = _object(content, "SendReply payload")
    status = _text(payload, "documentStatus", "SendReply payload")
    runtime = _get(payload, "runtimeStatus") or {}
    if not isinstance(runtime, dict):
        raise RunCommandError("SendReply payload: runtimeStatus must be an object")
    steps: list[StepResult] = []
    for key, item in runtime.items():
        what = f"runtimeStatus.{key}"
        if not isinstance(item, dict):
            raise RunCommandError(f"{what} must be an object")
        stdout = _text(item, "standardOutput", what)
        stderr = _text(item, "standardError", what)
        if not stdout and not stderr:  # older agents put everything in "output"
            stdout, _, stderr = _text(item, "output", what).partition(ERROR_SEPARATOR)
        steps.append(
            StepResult(
                step_name=_text(item, "stepName", what) or str(key),
                action=_text(item, "name", what) or str(key),
                status=_text(item, "status", what),
                code=_int(item, "code", what),
                standard_output=stdout[:MAX_STDOUT_CHARS],
                standard_error=stderr[:MAX_STDERR_CHARS],
                start=_text(item, "startDateTime", what),
                end=_text(item, "endDateTime", what),
            )
        )
    return SendReply(status, tuple(steps))


def invocation_status(document_status: str) -> str:
    """The API's invocation status for a reply's documentStatus (agent ResultStatus values)."""
    return {
        "Success": SUCCESS,
        "Failed": FAILED,
        "TimedOut": TIMED_OUT,
        "Cancelled": CANCELLED,
        "Cancelling": CANCELLING,
        "SuccessAndReboot": IN_PROGRESS,
        "PassedAndReboot": IN_PROGRESS,
        "InProgress": IN_PROGRESS,
        "Pending": IN_PROGRESS,  # the agent has it: no longer waiting for delivery
    }.get(document_status, FAILED)


# -- rate controls and the command's status (AWS: "Using targets and rate controls to send commands to
# a fleet", "Understanding command statuses") ----------------------------------------------------------


def counts_as_error(status: str, status_details: str) -> bool:
    """Whether an invocation counts against MaxErrors: Failed and ExecutionTimedOut do; delivery
    time-outs, undeliverable and terminated invocations do not."""
    return status in (FAILED, TIMED_OUT) and status_details not in NOT_ERRORS


def limit(value: str | None, target_count: int, *, minimum: int) -> int:
    """A MaxConcurrency / MaxErrors value ("10" or "10%") as a number of targets. A percentage of
    the targets is rounded down (50 targets at 10 % allow 5 errors: the sixth stops the command, as
    AWS's example says), and never below ``minimum``."""
    text = (value or "").strip()
    if text.endswith("%"):
        return max(minimum, target_count * int(text[:-1]) // 100)
    return max(minimum, int(text)) if text else minimum


@dataclasses.dataclass(frozen=True, slots=True)
class InvocationState:
    """What the rollout needs to know of one invocation."""

    instance_id: str
    status: str
    status_details: str
    dispatched: bool  # sent towards its agent (it holds a concurrency slot until it ends)


@dataclasses.dataclass(frozen=True, slots=True)
class Rollout:
    dispatch: tuple[str, ...]  # send these now
    terminate: tuple[str, ...]  # the error limit is exceeded: these never start (Cancelled/Terminated)


def plan_rollout(
    invocations: Sequence[InvocationState],
    *,
    max_concurrency: str | None,
    max_errors: str | None,
    cancel_requested: bool,
) -> Rollout:
    """Which waiting invocations to send now, in target order, and which to end unsent.

    At most MaxConcurrency invocations run at once (dispatched and not yet ended); once more than
    MaxErrors invocations have failed, nothing more is sent and the invocations still waiting end as
    Cancelled with StatusDetails Terminated, while those already running finish. A cancelled command
    sends nothing more (its waiting invocations were cancelled with it)."""
    waiting = [item.instance_id for item in invocations if item.status == PENDING and not item.dispatched]
    if cancel_requested:
        return Rollout((), ())
    total = len(invocations)
    errors = sum(1 for item in invocations if counts_as_error(item.status, item.status_details))
    if errors > limit(max_errors or DEFAULT_MAX_ERRORS, total, minimum=0):
        return Rollout((), tuple(waiting))
    running = sum(1 for item in invocations if item.dispatched and item.status not in FINAL_STATUSES)
    room = limit(max_concurrency or DEFAULT_MAX_CONCURRENCY, total, minimum=1) - running
    return Rollout(tuple(waiting[: max(0, room)]), ())


@dataclasses.dataclass(frozen=True, slots=True)
class CommandSummary:
    status: str
    status_details: str
    target_count: int
    completed_count: int
    error_count: int
    delivery_timed_out_count: int


def summarise(
    invocations: Iterable[tuple[str, str]], *, cancel_requested: bool, max_errors: str | None = None
) -> CommandSummary:
    """A command's Status and StatusDetails from its invocations' (Status, StatusDetails).

    While any invocation is active: Pending (none sent yet), InProgress, or Cancelling after a cancel.
    Then: Success when all succeeded; Cancelled after a cancel; Failed (or TimedOut /
    ExecutionTimedOut when the errors were time-outs) once more than MaxErrors invocations counted as
    errors; TimedOut / DeliveryTimedOut when more than MaxErrors were not delivered in time, or none
    was; Failed when none succeeded; otherwise Success with StatusDetails Incomplete (some did not
    succeed, but not enough failed for the command to fail). No targets at all: Success /
    NoInstancesInTag."""
    items = list(invocations)
    total = len(items)
    finished = sum(1 for status, _ in items if status in FINAL_STATUSES)
    delivery = sum(1 for _, details in items if details == DELIVERY_TIMED_OUT)
    errors = [status for status, details in items if counts_as_error(status, details)]

    def summary(status: str, details: str) -> CommandSummary:
        return CommandSummary(status, details, total, finished, len(errors), delivery)

    if total == 0:
        return summary(SUCCESS, NO_INSTANCES_IN_TAG)
    statuses = [status for status, _ in items]
    if finished < total:
        if cancel_requested:
            return summary(CANCELLING, DETAILS[CANCELLING])
        if all(status == PENDING for status in statuses):
            return summary(PENDING, DETAILS[PENDING])
        return summary(IN_PROGRESS, DETAILS[IN_PROGRESS])
    allowed = limit(max_errors or DEFAULT_MAX_ERRORS, total, minimum=0)
    if all(status == SUCCESS for status in statuses):
        return summary(SUCCESS, DETAILS[SUCCESS])
    if cancel_requested and (CANCELLED, DETAILS[CANCELLED]) in items:
        return summary(CANCELLED, DETAILS[CANCELLED])
    if len(errors) > allowed:
        return (
            summary(FAILED, DETAILS[FAILED]) if FAILED in errors else summary(TIMED_OUT, EXECUTION_TIMED_OUT)
        )
    if delivery > allowed or delivery == total:
        return summary(TIMED_OUT, DELIVERY_TIMED_OUT)
    if SUCCESS not in statuses:
        return summary(FAILED, DETAILS[FAILED])
    return summary(SUCCESS, INCOMPLETE)


# -- where a step's output goes (S3 keys, CloudWatch Logs streams) -------------------------------------

# AWS defines AWS-RunShellScript with schemaVersion 1.2, whose output is laid out by plugin
# (``awsrunShellScript/0.awsrunShellScript``); schema 2.2 documents lay it out by step name.
PLUGIN_LAYOUT_DOCUMENTS: Final = frozenset({RUN_SHELL_SCRIPT})
OUTPUT_STREAMS: Final = ("stdout", "stderr")


@dataclasses.dataclass(frozen=True, slots=True)
class OutputNames:
    s3_directory: str  # under <prefix>/<CommandId>/<InstanceId>/
    cloudwatch_plugin: str  # the third part of <CommandId>/<InstanceId>/<plugin>/stdout


def output_names(document_name: str, index: int, step_name: str, action: str) -> OutputNames:
    """Where AWS puts the output of step ``index`` (0-based) of a document."""
    if document_name in PLUGIN_LAYOUT_DOCUMENTS:
        plugin = action.replace(":", "")
        return OutputNames(f"{plugin}/{index}.{plugin}", action.replace(":", "-"))
    return OutputNames(step_name, step_name)


def s3_output_key(prefix: str, command_id: str, instance_id: str, names: OutputNames, stream: str) -> str:
    """``<prefix>/<CommandId>/<InstanceId>/<directory>/stdout`` (no prefix: from the CommandId)."""
    parts = [prefix.strip("/"), command_id, instance_id, names.s3_directory, stream]
    return "/".join(part for part in parts if part)


def cloudwatch_stream(command_id: str, instance_id: str, names: OutputNames, stream: str) -> str:
    return f"{command_id}/{instance_id}/{names.cloudwatch_plugin}/{stream}"


def default_log_group(document_name: str) -> str:
    """The log group AWS uses when CloudWatch output is enabled without a group name."""
    return f"/aws/ssm/{document_name}"
