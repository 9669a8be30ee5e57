"""Session Manager operations: StartSession, ResumeSession, TerminateSession, DescribeSessions."""

from __future__ import annotations

import datetime as dt
import urllib.parse
from typing import Any

from openssm.api import session_documents
from openssm.api.errors import ApiError
from openssm.api.pagination import page
from openssm.api.registry import json_action
from openssm.api.request import ApiRequest
from openssm.api.targets import resource_tag_context, target_arn
from openssm.api.validation import (
    epoch,
    filter_date,
    key_value_filters,
    paging,
    required_string,
    string,
    string_list_map,
)
from openssm.bus import node_channel
from openssm.iam.arn import session_arn
from openssm.protocol.documents import Preferences
from openssm.protocol.session_status import FINAL_STATUSES, TERMINABLE_STATUSES, SessionStatus
from openssm.security import AuditBatch, access_grants, audited
from openssm.services import Services
from openssm.store import channel_tokens, gateway_nodes, ids, instances, sessions
from openssm.store.rows import reading
from openssm.store.sessions import NewSession, SessionRow

SSM = "AmazonSSM"
DOCUMENT_NAME_PATTERN = r"^[a-zA-Z0-9_\-.:/]{3,128}$"
SESSION_ID_PATTERN = r"^.{1,96}$"
RUN_AS_TAG = "SSMSessionRunAs"
# Resuming takes the session's shell over (its client token is bound to the principal it is issued
# to), so only the principal that started it may, whatever policies allow; others terminate it.
OWNER_ONLY = "OpenSSM: only the principal that started a session may resume it"
SESSION_FILTER_KEYS = (
    "InvokedAfter",
    "InvokedBefore",
    "Target",
    "Owner",
    "Status",
    "SessionId",
    "AccessType",
)


def stream_url(public_url: str, session_id: str) -> str:
    """The data-channel URL on the gateway node: its public URL with a WebSocket scheme."""
    parts = urllib.parse.urlsplit(public_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    base = urllib.parse.urlunsplit((scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
    return f"{base}/v1/data-channel/{urllib.parse.quote(session_id, safe='')}?role=publish_subscribe"


def _not_connected(target: str) -> ApiError:
    return ApiError("TargetNotConnected", f"{target} is not connected.")


async def _authorize_start(
    request: ApiRequest,
    target: str,
    tags: dict[str, Any] | None,
    document: session_documents.SessionDocument,
    explicit_document: bool,
    batch: AuditBatch,
) -> None:
    """Two checks, as AWS does: the target, and (when a document was named) the document.

    ``ssm:SessionDocumentAccessCheck`` is "false" on the target check when no document was named, so
    policies conditioned on ``BoolIfExists … "true"`` demand an explicit, separately allowed document;
    policies without the condition behave as the docs describe (default document, no document check).
    """
    context: dict[str, list[str]] = resource_tag_context(tags)
    context[access_grants.DOCUMENT_NAME_KEY] = [document.name]  # pairs the target with the document
    if not explicit_document:
        context["ssm:SessionDocumentAccessCheck"] = ["false"]
    await request.authorize(
        "ssm:StartSession", [target_arn(request.region, request.account, target)], context, batch=batch
    )
    if explicit_document:
        pairing = {access_grants.TARGET_KEY: [target]}
        await request.authorize("ssm:StartSession", [document.arn(request.region)], pairing, batch=batch)


def _run_as_user(prefs: Preferences, principal_tags: dict[str, str]) -> str | None:
    """With Run As on, the caller's ``SSMSessionRunAs`` tag names the OS user, else the default."""
    if not prefs.run_as_enabled:
        return None
    return principal_tags.get(RUN_AS_TAG) or prefs.run_as_default_user or None


@json_action(SSM, "StartSession")
async def start_session(request: ApiRequest, body: dict[str, Any]) -> dict[str, Any]:
    # The decisions are written in the transaction that creates the session (one commit, not three).
    async with audited(request.services) as batch:
        return await _start_session(request, body, batch)


async def _start_session(request: ApiRequest, body: dict[str, Any], batch: AuditBatch) -> dict[str, Any]:
    target = required_string(body, "Target", min_len=1, max_len=400)
    document_name = string(body, "DocumentName", pattern=DOCUMENT_NAME_PATTERN)
    reason = string(body, "Reason", min_len=1, max_len=256)
    given_parameters = string_list_map(body, "Parameters")
    identity = request.require_identity()
    engine = request.services.engine
    explicit = document_name is not None
    name = document_name or session_documents.PREFERENCES_DOCUMENT
    async with reading(engine) as conn:  # the rows StartSession reads, on one connection
        document = await session_documents.find_or_fail(conn, name, request.account)
        instance = await instances.get(conn, target)
        inputs, prefs = await session_documents.preferences(conn, document)
    await _authorize_start(request, target, instance.tags if instance else None, document, explicit, batch)
    parameters = session_documents.checked_parameters(document, given_parameters)
    now = request.now()
    alive = await gateway_nodes.alive(engine, now=now, own_node=request.services.config.node_id)
    if instance is None or instance.ping_status(alive) != "Online" or instance.control_node_id is None:
        raise _not_connected(target)
    node_id = instance.control_node_id
    content = dict(document.content)
    content["inputs"] = inputs
    principal = identity.principal
    session_id = f"{principal.friendly_name}-{ids.hex17()}"
    token = ids.bearer_token()
    new = NewSession(
        session_id=session_id,
        target=target,
        document_name=document.name,
        session_type=document.session_type,
        owner_arn=principal.arn,
        owner_name=principal.friendly_name,
        reason=reason,
        parameters=parameters,
        document_content=content,
        run_as_user=_run_as_user(prefs, dict(principal.tags)),
        node_id=node_id,
        start_date=now,
        max_session_duration=prefs.max_session_duration,
        idle_session_timeout=prefs.idle_session_timeout,
    )
    async with batch.transaction(request.services) as conn:
        await sessions.create(conn, new, token=token, token_ttl=_token_ttl(request))
    return {"SessionId": session_id, "TokenValue": token, "StreamUrl": stream_url(alive[node_id], session_id)}


def _token_ttl(request: ApiRequest) -> dt.timedelta:
    return dt.timedelta(seconds=request.services.config.token_ttl_seconds)


def _session_context(row: SessionRow) -> dict[str, list[str]]:
    return {
        "ssm:resourceTag/aws:ssmmessages:session-id": [row.session_id],
        "ssm:resourceTag/aws:ssmmessages:target-id": [row.target],
    }


async def _authorized_session(
    request: ApiRequest, session_id: str, action: str, *, owner_only: bool = False
) -> SessionRow:
    row = await sessions.get(request.services.engine, session_id)
    context = _session_context(row) if row else {}
    resource = session_arn(request.region, request.account, session_id)
    identity = request.require_identity()
    if owner_only and row is not None and row.owner_arn != identity.principal.arn:
        await request.refuse_by_rule(
            action, resource, rule=OWNER_ONLY, because=f"because the session belongs to {row.owner_arn}"
        )
    await request.authorize(action, [resource], context)
    if row is None:
        raise ApiError("DoesNotExistException", f"Session {session_id} does not exist.")
    return row


@json_action(SSM, "ResumeSession")
async def resume_session(request: ApiRequest, body: dict[str, Any]) -> dict[str, Any]:
    session_id = required_string(body, "SessionId", pattern=SESSION_ID_PATTERN)
    row = await _authorized_session(request, session_id, "ssm:ResumeSession", owner_only=True)
    if row.status not in TERMINABLE_STATUSES:
        ended = f" ({row.termination_reason})" if row.termination_reason else ""
        raise ApiError("DoesNotExistException", f"Session {session_id} is no longer active{ended}.")
    now = request.now()
    alive = await gateway_nodes.alive(
        request.services.engine, now=now, own_node=request.services.config.node_id
    )
    node_id = row.node_id
    if node_id is None or node_id not in alive:
        # Its node died: the session goes on at the node that now holds the target's control
        # channel, which takes it over when the client's data channel arrives there.
        instance = await instances.get(request.services.engine, row.target)
        node_id = instance.control_node_id if instance else None
        if node_id is None or node_id not in alive:
            raise _not_connected(row.target)
    token = ids.bearer_token()
    await channel_tokens.issue(
        request.services.engine,
        token,
        kind=channel_tokens.TokenKind.CLIENT,
        channel_id=session_id,
        principal_arn=request.require_identity().principal.arn,
        now=now,
        ttl=_token_ttl(request),
    )
    return {
        "SessionId": session_id,
        "TokenValue": token,
        "StreamUrl": stream_url(alive[node_id], session_id),
    }


@json_action(SSM, "TerminateSession")
async def terminate_session(request: ApiRequest, body: dict[str, Any]) -> dict[str, Any]:
    session_id = required_string(body, "SessionId", pattern=SESSION_ID_PATTERN)
    row = await _authorized_session(request, session_id, "ssm:TerminateSession")
    if row.status in FINAL_STATUSES:
        return {"SessionId": session_id}
    reason = f"Terminated by {request.require_identity().principal.arn}"
    await end_session(request.services, row, reason, now=request.now())
    return {"SessionId": session_id}


async def end_session(services: Services, row: SessionRow, reason: str, *, now: dt.datetime) -> bool:
    """End a session the way TerminateSession does: mark it Terminating, then the gateway node that
    carries it ends it (told over the bus), or, when no live node carries it, end it here. True when
    this call was the one that marked it (a session already ending is told again, not counted)."""
    engine = services.engine
    marked = await sessions.mark_terminating(engine, row.session_id)
    node_id = row.node_id
    if node_id is not None and node_id in await gateway_nodes.alive(
        engine, now=now, own_node=services.config.node_id
    ):
        await services.bus.publish(
            node_channel.node_channel(node_id), node_channel.terminate(row.session_id, reason)
        )
    else:  # nobody carries it any more: end it here
        await sessions.finish(engine, row.session_id, status=SessionStatus.TERMINATED, reason=reason, now=now)
    return marked


def _session_filters(body: dict[str, Any]) -> list[tuple[str, str]]:
    return key_value_filters(body, allowed_keys=SESSION_FILTER_KEYS, max_items=6, max_value_len=400)


def _parse_filter_date(value: str) -> dt.datetime:
    return filter_date(value, error_code="InvalidFilterValue")


def _session_matches(row: SessionRow, key: str, value: str) -> bool:
    if key == "InvokedAfter":
        return row.start_date >= _parse_filter_date(value)
    if key == "InvokedBefore":
        return row.start_date <= _parse_filter_date(value)
    if key == "AccessType":
        return value == "Standard"
    field = {"Target": row.target, "Owner": row.owner_arn, "Status": row.status, "SessionId": row.session_id}
    return field[key] == value


def _session_shape(row: SessionRow) -> dict[str, Any]:
    output = {"S3OutputUrl": row.output_s3_url, "CloudWatchOutputUrl": row.output_cloudwatch_url}
    duration = row.max_session_duration
    return {
        "SessionId": row.session_id,
        "Target": row.target,
        "Status": row.status,
        "StartDate": epoch(row.start_date),
        "EndDate": epoch(row.end_date),
        "DocumentName": row.document_name,
        "Owner": row.owner_arn,
        "Reason": row.reason,
        "Details": row.details or row.termination_reason,
        "OutputUrl": output if any(output.values()) else None,
        "MaxSessionDuration": str(duration) if duration else None,
        "AccessType": "Standard",
    }


@json_action(SSM, "DescribeSessions")
async def describe_sessions(request: ApiRequest, body: dict[str, Any]) -> dict[str, Any]:
    state = required_string(body, "State", allowed=("Active", "History"))
    max_results, next_token = paging(body, maximum=200, default=20)
    filters = _session_filters(body)
    await request.authorize("ssm:DescribeSessions", ["*"])
    rows = await sessions.list_by_state(request.services.engine, active=state == "Active")
    matching = [row for row in rows if all(_session_matches(row, key, value) for key, value in filters)]
    chunk, token = page(matching, next_token, max_results, f"sessions-{state}")
    return {"Sessions": [_session_shape(row) for row in chunk], "NextToken": token}
