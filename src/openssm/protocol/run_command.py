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
    TIMED_OUT: "ExecutionTimedOut",
    CANCELLING: "Cancelling",
    CANCELLED: "Cancelled",
}
DELIVERY_TIMED_OUT: Final = "DeliveryTimedOut"
UNDELIVERABLE: Final = "Undeliverable"

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


@dataclasses.dataclass(frozen=True, slots=True)
class CommandSummary:
    status: str
    status_details: str
    target_count: int
    completed_count: int
    error_count: int
    delivery_timed_out_count: int


def summarise(invocations: Iterable[tuple[str, str]], *, cancel_requested: bool) -> CommandSummary:
    """A command's status from its invocations' (status, status_details), as AWS reports it."""
    items = list(invocations)
    statuses = [status for status, _ in items]
    finished = [status for status in statuses if status in FINAL_STATUSES]
    delivery = sum(1 for _, details in items if details == DELIVERY_TIMED_OUT)
    errors = sum(
        1 for status, details in items if status in (FAILED, TIMED_OUT) and details != DELIVERY_TIMED_OUT
    )
    if len(finished) < len(items):
        if cancel_requested:
            status = CANCELLING
        elif all(item == PENDING for item in statuses):
            status = PENDING
        else:
            status = IN_PROGRESS
        return CommandSummary(status, DETAILS[status], len(items), len(finished), errors, delivery)
    if all(item == SUCCESS for item in statuses):
        status, details = SUCCESS, SUCCESS
    elif delivery == len(items):
        status, details = TIMED_OUT, DELIVERY_TIMED_OUT
    elif CANCELLED in statuses and cancel_requested:
        status, details = CANCELLED, CANCELLED
    elif FAILED in statuses:
        status, details = FAILED, FAILED
    else:
        status, details = TIMED_OUT, DETAILS[TIMED_OUT]
    return CommandSummary(status, details, len(items), len(finished), errors, delivery)
