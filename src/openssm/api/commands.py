"""Run Command: SendCommand, ListCommands, ListCommandInvocations, GetCommandInvocation, CancelCommand.

Commands are stored per target (``command_invocations``). The API then asks its own gateway node to
roll the command out (bus ``run_command``): the node sends as many invocations as MaxConcurrency
allows to the nodes holding their targets' control channels, and sends the next ones as
invocations end, until more than MaxErrors have failed (``openssm.gateway.jobs``). A target that is
offline gets its job when its control channel next opens, or times out undelivered (``TimedOut`` /
``DeliveryTimedOut``) once the command's ``TimeoutSeconds`` have passed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from typing import Any, Final

from openssm.api.errors import ApiError
from openssm.api.pagination import page
from openssm.api.registry import json_action
from openssm.api.request import ApiRequest
from openssm.api.targets import resource_tag_context, target_arn
from openssm.api.validation import (
    epoch,
    filter_date,
    integer,
    key_value_filters,
    object_list,
    paging,
    required_string,
    string,
    string_list,
    string_list_map,
)
from openssm.bus import node_channel
from openssm.iam.arn import document_arn
from openssm.protocol import run_command as rc
from openssm.protocol.documents import DocumentError, validate_parameters
from openssm.store import commands as store
from openssm.store import instances
from openssm.store.commands import CommandRow, InvocationRow
from openssm.store.instances import InstanceRow

SSM: Final = "AmazonSSM"
DOCUMENT_NAME_PATTERN: Final = r"^[a-zA-Z0-9_\-.:/]{3,128}$"
COMMAND_ID_PATTERN: Final = r"^.{36}$"
INSTANCE_ID_PATTERN: Final = r"(^i-(\w{8}|\w{17})$)|(^mi-\w{17}$)"
RATE_PATTERN: Final = r"^([1-9][0-9]*|[1-9][0-9]%|[1-9]%|100%)$"
ERRORS_PATTERN: Final = r"^([1-9][0-9]*|[0]|[1-9][0-9]%|[0-9]%|100%)$"
LOG_GROUP_PATTERN: Final = r"^[.\-_/#A-Za-z0-9]+$"
DEFAULT_TIMEOUT_SECONDS: Final = 3600
MAX_TARGETS: Final = 50  # Values per target and InstanceIds, as AWS limits them
COMMAND_FILTER_KEYS: Final = ("InvokedAfter", "InvokedBefore", "Status", "ExecutionStage", "DocumentName")


def _iso(value: dt.datetime | None) -> str:
    """GetCommandInvocation's times are strings (ISO-8601 with milliseconds), "" when unset."""
    if value is None:
        return ""
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _elapsed(start: dt.datetime | None, end: dt.datetime | None) -> str:
    if start is None or end is None:
        return ""
    return f"PT{max(0.0, (end - start).total_seconds()):.3f}S"


# -- SendCommand ------------------------------------------------------------------------------------


def _invalid_instances(ids: list[str], account: str) -> ApiError:
    shown = ", ".join(f"[{item}]" for item in ids)
    return ApiError("InvalidInstanceId", f"Instances [{shown}] not in a valid state for account {account}")


TAG_KEY_TARGET: Final = "tag-key"


def _targets(body: dict[str, Any]) -> list[dict[str, Any]]:
    targets = []
    for index, item in enumerate(object_list(body, "Targets", max_items=5)):
        path = f"Targets.{index + 1}.member"
        key = required_string(item, "Key", min_len=1, max_len=163, path=f"{path}.Key")
        values = string_list(item.get("Values", []), f"{path}.Values")
        if len(values) > MAX_TARGETS:
            raise ApiError("ValidationException", f"At most {MAX_TARGETS} values per target.")
        if key.lower() not in ("instanceids", TAG_KEY_TARGET) and not key.startswith("tag:"):
            raise ApiError(
                "InvalidTarget",
                f"Target key {key} is not supported (use InstanceIds, tag:<key> or tag-key).",
            )
        if not values:
            raise ApiError("InvalidTarget", f"Target {key} must have at least one value.")
        targets.append({"Key": key, "Values": values})
    return targets


def _matches_target(row: InstanceRow, key: str, values: list[str]) -> bool:
    if key.lower() == TAG_KEY_TARGET:
        return any(value in row.tags for value in values)
    tag = key.removeprefix("tag:")
    return tag in row.tags and row.tags[tag] in values


async def _resolve_targets(
    request: ApiRequest, instance_ids: list[str], targets: list[dict[str, Any]]
) -> list[InstanceRow]:
    """The instances a command runs on. Named instances must exist and be registered; tag targets
    (``tag:<key>`` = one of the values; ``tag-key`` = has one of the keys, every target applying)
    pick whatever registered instances match, possibly none, as AWS does."""
    engine = request.services.engine
    wanted = list(dict.fromkeys(instance_ids))
    tag_filters: list[tuple[str, list[str]]] = []
    for target in targets:
        if target["Key"].lower() == "instanceids":
            wanted.extend(value for value in target["Values"] if value not in wanted)
        else:
            tag_filters.append((target["Key"], target["Values"]))
    found: dict[str, InstanceRow] = {}
    missing = []
    for instance_id in wanted:
        row = await instances.get(engine, instance_id)
        if row is None or row.deregistered:
            missing.append(instance_id)
        else:
            found[instance_id] = row
    if missing:
        raise _invalid_instances(missing, request.account)
    if tag_filters:
        for row in await instances.list_all(engine):
            if not row.deregistered and all(_matches_target(row, key, values) for key, values in tag_filters):
                found.setdefault(row.instance_id, row)
    return list(found.values())


def _cloudwatch_output(body: dict[str, Any]) -> tuple[str | None, bool]:
    """CloudWatchOutputConfig: (log group name, enabled)."""
    given = body.get("CloudWatchOutputConfig")
    if given is None:
        return None, False
    if not isinstance(given, dict):
        raise ApiError("ValidationException", "CloudWatchOutputConfig must be a structure.")
    group = string(
        given,
        "CloudWatchLogGroupName",
        min_len=1,
        max_len=512,
        pattern=LOG_GROUP_PATTERN,
        path="CloudWatchOutputConfig.CloudWatchLogGroupName",
    )
    enabled = given.get("CloudWatchOutputEnabled", False)
    if not isinstance(enabled, bool):
        raise ApiError(
            "ValidationException", "CloudWatchOutputConfig.CloudWatchOutputEnabled must be a boolean."
        )
    return group, enabled


def _command_document(name: str) -> dict[str, Any]:
    document = rc.builtin_command_documents().get(name.rsplit("/", 1)[-1])
    if document is None:
        raise ApiError("InvalidDocument", f"Document with name {name} does not exist.")
    return document


def _checked_parameters(
    name: str, document: dict[str, Any], given: dict[str, list[str]]
) -> dict[str, list[str]]:
    try:
        return validate_parameters(document, given)
    except DocumentError as exc:
        raise ApiError(
            "InvalidParameters", f"Parameter '{exc.field}' of document {name}: {exc.message}"
        ) from exc


@json_action(SSM, "SendCommand")
async def send_command(request: ApiRequest, body: dict[str, Any]) -> dict[str, Any]:
    document_name = required_string(body, "DocumentName", pattern=DOCUMENT_NAME_PATTERN)
    document_version = string(body, "DocumentVersion", pattern=r"^([$]LATEST|[$]DEFAULT|^[1-9][0-9]*$)$")
    instance_ids = string_list(body.get("InstanceIds", []), "InstanceIds")
    for instance_id in instance_ids:
        string({"v": instance_id}, "v", pattern=INSTANCE_ID_PATTERN, path="InstanceIds")
    targets = _targets(body)
    if not instance_ids and not targets:
        raise ApiError("ValidationException", "Either InstanceIds or Targets must be specified.")
    if instance_ids and targets:
        raise ApiError("ValidationException", "InstanceIds and Targets cannot both be specified.")
    if len(instance_ids) > MAX_TARGETS:
        raise ApiError("ValidationException", f"At most {MAX_TARGETS} InstanceIds.")
    timeout = integer(body, "TimeoutSeconds", minimum=30, maximum=2_592_000) or DEFAULT_TIMEOUT_SECONDS
    comment = string(body, "Comment", max_len=100)
    max_concurrency = string(body, "MaxConcurrency", min_len=1, max_len=7, pattern=RATE_PATTERN)
    max_errors = string(body, "MaxErrors", min_len=1, max_len=7, pattern=ERRORS_PATTERN)
    given = string_list_map(body, "Parameters")
    output_region = string(body, "OutputS3Region", min_len=3, max_len=20)
    output_bucket = string(body, "OutputS3BucketName", min_len=3, max_len=63)
    output_prefix = string(body, "OutputS3KeyPrefix", max_len=500)
    log_group, cloudwatch_enabled = _cloudwatch_output(body)
    if document_version not in (None, "1", "$LATEST", "$DEFAULT"):
        raise ApiError(
            "InvalidDocumentVersion", f"Document {document_name} has no version {document_version}."
        )

    document = _command_document(document_name)
    short_name = document_name.rsplit("/", 1)[-1]
    chosen = await _resolve_targets(request, instance_ids, targets)
    for instance in chosen:
        await request.authorize(
            "ssm:SendCommand",
            [target_arn(request.region, request.account, instance.instance_id)],
            resource_tag_context(instance.tags),
        )
    await request.authorize("ssm:SendCommand", [document_arn(request.region, "", short_name)])
    parameters = _checked_parameters(short_name, document, given)

    now = request.now()
    execution_timeout = int((parameters.get("executionTimeout") or [str(rc.DEFAULT_EXECUTION_TIMEOUT)])[0])
    command_id = str(uuid.uuid4())
    command = CommandRow(
        command_id=command_id,
        document_name=short_name,
        document_version="$DEFAULT",
        document_content=document,
        parameters=parameters,
        comment=comment,
        instance_ids=instance_ids,
        targets=targets,
        requested_at=now,
        delivery_deadline=now + dt.timedelta(seconds=timeout),
        expires_after=now + dt.timedelta(seconds=timeout + execution_timeout),
        timeout_seconds=timeout,
        max_concurrency=max_concurrency or rc.DEFAULT_MAX_CONCURRENCY,
        max_errors=max_errors or rc.DEFAULT_MAX_ERRORS,
        output_s3_region=output_region or request.region,
        output_s3_bucket_name=output_bucket or "",
        output_s3_key_prefix=output_prefix or "",
        cloudwatch_log_group_name=log_group,
        cloudwatch_output_enabled=cloudwatch_enabled,
        cancel_requested=False,
        owner_arn=request.require_identity().principal.arn,
    )
    invocations = [
        store.pending_invocation(
            command_id, instance.instance_id, instance.computer_name or instance.name or ""
        )
        for instance in chosen
    ]
    await store.create(request.services.engine, command, invocations)
    await _roll_out(request, command_id)
    return {"Command": _command_shape(command, invocations)}


async def _roll_out(request: ApiRequest, command_id: str, *, cancel: bool = False) -> None:
    """Ask this server's own gateway node to take the command's next rollout step (it routes each
    job, or cancel, to the node holding the agent's control channel)."""
    own = node_channel.node_channel(request.services.config.node_id)
    await request.services.bus.publish(own, node_channel.run_command(command_id, cancel=cancel))


# -- shapes -----------------------------------------------------------------------------------------


def _command_shape(command: CommandRow, invocations: list[InvocationRow]) -> dict[str, Any]:
    summary = _summary(command, invocations)
    return {
        "CommandId": command.command_id,
        "DocumentName": command.document_name,
        "DocumentVersion": command.document_version or "$DEFAULT",
        "Comment": command.comment or "",
        "ExpiresAfter": epoch(command.expires_after),
        "Parameters": command.parameters,
        "InstanceIds": command.instance_ids,
        "Targets": command.targets,
        "RequestedDateTime": epoch(command.requested_at),
        "Status": summary.status,
        "StatusDetails": summary.status_details,
        **_output_location(command),
        "MaxConcurrency": command.max_concurrency or rc.DEFAULT_MAX_CONCURRENCY,
        "MaxErrors": command.max_errors or rc.DEFAULT_MAX_ERRORS,
        "TargetCount": summary.target_count,
        "CompletedCount": summary.completed_count,
        "ErrorCount": summary.error_count,
        "DeliveryTimedOutCount": summary.delivery_timed_out_count,
        "ServiceRole": "",
        "NotificationConfig": {"NotificationArn": "", "NotificationEvents": [], "NotificationType": ""},
        "CloudWatchOutputConfig": _cloudwatch_shape(command),
        "TimeoutSeconds": command.timeout_seconds,
        "AlarmConfiguration": {"IgnorePollAlarmFailure": False, "Alarms": []},
        "TriggeredAlarms": [],
    }


def _summary(command: CommandRow, invocations: list[InvocationRow]) -> rc.CommandSummary:
    return rc.summarise(
        ((row.status, row.status_details) for row in invocations),
        cancel_requested=command.cancel_requested,
        max_errors=command.max_errors,
    )


def _cloudwatch_shape(command: CommandRow) -> dict[str, Any]:
    return {
        "CloudWatchLogGroupName": command.log_group or "",
        "CloudWatchOutputEnabled": command.cloudwatch_output_enabled,
    }


def _parse_iso(value: str) -> float | None:
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return epoch(parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC))


def _output_location(command: CommandRow) -> dict[str, str]:
    return {
        "OutputS3Region": command.output_s3_region or "",
        "OutputS3BucketName": command.output_s3_bucket_name or "",
        "OutputS3KeyPrefix": command.output_s3_key_prefix or "",
    }


def _output_urls(
    request: ApiRequest, command: CommandRow, instance_id: str, index: int, plugin: dict[str, Any]
) -> dict[str, str]:
    """StandardOutputUrl / StandardErrorUrl of one step: where its output goes in the command's
    bucket (empty without one), as AWS shows them."""
    bucket = command.output_s3_bucket_name
    if not bucket:
        return {"StandardOutputUrl": "", "StandardErrorUrl": ""}
    names = rc.output_names(
        command.document_name, index, str(plugin.get("step_name") or ""), str(plugin.get("name") or "")
    )
    endpoint = request.services.config.s3_endpoint_url
    base = (
        endpoint.rstrip("/")
        if endpoint
        else f"https://s3.{command.output_s3_region or request.region}.amazonaws.com"
    )
    prefix = command.output_s3_key_prefix or ""

    def url(stream: str) -> str:
        return f"{base}/{bucket}/{rc.s3_output_key(prefix, command.command_id, instance_id, names, stream)}"

    return {"StandardOutputUrl": url("stdout"), "StandardErrorUrl": url("stderr")}


def _plugin_shape(
    request: ApiRequest, command: CommandRow, instance_id: str, index: int, plugin: dict[str, Any]
) -> dict[str, Any]:
    status = plugin.get("status") or rc.PENDING
    return {
        "Name": plugin.get("name"),
        "Status": status,
        "StatusDetails": rc.DETAILS.get(status, status),
        "ResponseCode": plugin.get("code", -1),
        "ResponseStartDateTime": _parse_iso(plugin.get("start") or ""),
        "ResponseFinishDateTime": _parse_iso(plugin.get("end") or ""),
        "Output": plugin.get("output") or "",
        **_output_urls(request, command, instance_id, index, plugin),
        **_output_location(command),
    }


def _invocation_shape(
    request: ApiRequest, command: CommandRow, row: InvocationRow, details: bool
) -> dict[str, Any]:
    plugins = row.plugins
    # AWS fills an invocation's URLs when its document has one step.
    urls = (
        _output_urls(request, command, row.instance_id, 0, plugins[0])
        if len(plugins) == 1
        else {"StandardOutputUrl": "", "StandardErrorUrl": ""}
    )
    shape: dict[str, Any] = {
        "CommandId": row.command_id,
        "InstanceId": row.instance_id,
        "InstanceName": row.instance_name or "",
        "Comment": command.comment or "",
        "DocumentName": command.document_name,
        "DocumentVersion": command.document_version or "$DEFAULT",
        "RequestedDateTime": epoch(command.requested_at),
        "Status": row.status,
        "StatusDetails": row.status_details,
        **urls,
        "CommandPlugins": (
            [_plugin_shape(request, command, row.instance_id, i, plugin) for i, plugin in enumerate(plugins)]
            if details
            else []
        ),
        "ServiceRole": "",
        "NotificationConfig": {"NotificationArn": "", "NotificationEvents": [], "NotificationType": ""},
        "CloudWatchOutputConfig": _cloudwatch_shape(command),
    }
    if details:
        shape["TraceOutput"] = ""
    return shape


# -- reads ------------------------------------------------------------------------------------------


async def _expire(request: ApiRequest) -> None:
    """Time-outs are applied when read: nothing has to run on a schedule for them."""
    now = request.now()
    await store.expire_undelivered(request.services.engine, now=now)
    await store.expire_unfinished(request.services.engine, now=now)


def _filters(body: dict[str, Any]) -> list[tuple[str, str]]:
    return key_value_filters(body, allowed_keys=COMMAND_FILTER_KEYS, max_items=5, max_value_len=128)


def _date(value: str) -> dt.datetime:
    return filter_date(value, error_code="InvalidFilter")


def _matches(command: CommandRow, status: tuple[str, str], key: str, value: str) -> bool:
    """One filter; a Status filter matches the Status or the StatusDetails (TimedOut takes both
    delivery and execution time-outs; DeliveryTimedOut, Terminated … only those)."""
    if key == "InvokedAfter":
        return command.requested_at >= _date(value)
    if key == "InvokedBefore":
        return command.requested_at <= _date(value)
    if key == "DocumentName":
        return command.document_name == value
    if key == "ExecutionStage":
        return (status[0] in rc.FINAL_STATUSES) == (value == "Complete")
    return value in status


def _command_id(body: dict[str, Any], *, required: bool = False) -> str | None:
    return string(body, "CommandId", required=required, min_len=36, max_len=36)


def _instance_id(body: dict[str, Any], *, required: bool = False) -> str | None:
    return string(body, "InstanceId", required=required, pattern=INSTANCE_ID_PATTERN)


@dataclasses.dataclass(frozen=True, slots=True)
class _Listing:
    """What ListCommands and ListCommandInvocations were asked for, and the commands it covers."""

    instance_id: str | None
    max_results: int
    next_token: str | None
    filters: list[tuple[str, str]]
    commands: dict[str, CommandRow]  # by id, newest first


async def _listing(request: ApiRequest, body: dict[str, Any], action: str) -> _Listing:
    command_id, instance_id = _command_id(body), _instance_id(body)
    max_results, next_token = paging(body, token_chars=None)
    filters = _filters(body)
    await request.authorize(f"ssm:{action}", ["*"])
    await _expire(request)
    engine = request.services.engine
    if command_id is None:
        rows = await store.list_commands(engine, instance_id=instance_id)
    else:
        found = await store.get_command(engine, command_id)
        if found is None:
            raise ApiError("InvalidCommandId", "")
        rows = [found]
    return _Listing(instance_id, max_results, next_token, filters, {row.command_id: row for row in rows})


@json_action(SSM, "ListCommands")
async def list_commands(request: ApiRequest, body: dict[str, Any]) -> dict[str, Any]:
    listing = await _listing(request, body, "ListCommands")
    by_command: dict[str, list[InvocationRow]] = {command_id: [] for command_id in listing.commands}
    for invocation in await store.list_invocations(request.services.engine, command_ids=list(by_command)):
        by_command[invocation.command_id].append(invocation)
    matching = []
    for command_id, command in listing.commands.items():
        shape = _command_shape(command, by_command[command_id])
        status = (shape["Status"], shape["StatusDetails"])
        if all(_matches(command, status, key, value) for key, value in listing.filters):
            matching.append(shape)
    chunk, token = page(matching, listing.next_token, listing.max_results, "commands")
    return {"Commands": chunk, "NextToken": token}


@json_action(SSM, "ListCommandInvocations")
async def list_command_invocations(request: ApiRequest, body: dict[str, Any]) -> dict[str, Any]:
    details = body.get("Details") is True
    listing = await _listing(request, body, "ListCommandInvocations")
    commands = listing.commands
    rows = await store.list_invocations(
        request.services.engine, command_ids=list(commands), instance_id=listing.instance_id
    )
    rows.sort(key=lambda row: (commands[row.command_id].requested_at, row.instance_id), reverse=True)
    matching = [
        row
        for row in rows
        if all(
            _matches(commands[row.command_id], (row.status, row.status_details), key, value)
            for key, value in listing.filters
        )
    ]
    chunk, token = page(matching, listing.next_token, listing.max_results, "command-invocations")
    return {
        "CommandInvocations": [
            _invocation_shape(request, commands[row.command_id], row, details) for row in chunk
        ],
        "NextToken": token,
    }


@json_action(SSM, "GetCommandInvocation")
async def get_command_invocation(request: ApiRequest, body: dict[str, Any]) -> dict[str, Any]:
    command_id = _command_id(body, required=True)
    instance_id = _instance_id(body, required=True)
    plugin_name = string(body, "PluginName", min_len=4)
    assert command_id is not None and instance_id is not None
    await request.authorize("ssm:GetCommandInvocation", ["*"])
    await _expire(request)
    engine = request.services.engine
    command = await store.get_command(engine, command_id)
    row = await store.get_invocation(engine, command_id, instance_id) if command else None
    if command is None or row is None:
        raise ApiError("InvocationDoesNotExist", "")
    plugins = row.plugins
    index = 0
    if plugin_name is not None:
        index = next(
            (i for i, p in enumerate(plugins) if plugin_name in (p.get("name"), p.get("step_name"))), -1
        )
        if index < 0 and not (not plugins and plugin_name == rc.RUN_SHELL_SCRIPT_ACTION):
            raise ApiError("InvalidPluginName", "")
    plugin: dict[str, Any] | None = plugins[index] if 0 <= index < len(plugins) else None
    urls = (
        _output_urls(request, command, instance_id, index, plugin)
        if plugin is not None
        else {"StandardOutputUrl": "", "StandardErrorUrl": ""}
    )
    start, end = row.started_at, row.ended_at if row.started_at else None
    return {
        "CommandId": command_id,
        "InstanceId": instance_id,
        "Comment": command.comment or "",
        "DocumentName": command.document_name,
        "DocumentVersion": command.document_version or "$DEFAULT",
        "PluginName": (plugin or {}).get("name") or plugin_name or rc.RUN_SHELL_SCRIPT_ACTION,
        "ResponseCode": row.response_code,
        "ExecutionStartDateTime": _iso(start),
        "ExecutionElapsedTime": _elapsed(start, end),
        "ExecutionEndDateTime": _iso(end),
        "Status": row.status,
        "StatusDetails": row.status_details,
        "StandardOutputContent": row.standard_output or "",
        "StandardOutputUrl": urls["StandardOutputUrl"],
        "StandardErrorContent": row.standard_error or "",
        "StandardErrorUrl": urls["StandardErrorUrl"],
        "CloudWatchOutputConfig": _cloudwatch_shape(command),
    }


@json_action(SSM, "CancelCommand")
async def cancel_command(request: ApiRequest, body: dict[str, Any]) -> dict[str, Any]:
    command_id = _command_id(body, required=True)
    assert command_id is not None
    given = body.get("InstanceIds")
    instance_ids = string_list(given, "InstanceIds") if given is not None else None
    if instance_ids is not None and len(set(instance_ids)) != len(instance_ids):
        raise ApiError("DuplicateInstanceId", "")
    await request.authorize("ssm:CancelCommand", ["*"])
    engine = request.services.engine
    command = await store.get_command(engine, command_id)
    if command is None:
        raise ApiError("InvalidCommandId", "")
    if instance_ids:
        known = {row.instance_id for row in await store.list_invocations(engine, command_ids=[command_id])}
        unknown = [item for item in instance_ids if item not in known]
        if unknown:
            raise ApiError(
                "InvalidInstanceId", f"Instances {unknown} are not targets of command {command_id}."
            )
    await store.request_cancel(engine, command_id, instance_ids or None, now=request.now())
    await _roll_out(request, command_id, cancel=True)
    return {}
