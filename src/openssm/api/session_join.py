"""Live-session join (JSON 1.1, ``OpenSSM_20261201.*``): OpenSSM's own operations, shaped like AWS's.

- ``JoinSession`` {SessionId, ReadOnly, LastScreen} → {SessionId, StreamUrl, TokenValue}: authorised
  as ``openssm:JoinSession`` on the session's ARN, with the condition key ``openssm:JoinMode``
  (``ReadOnly`` | ``ReadWrite``) besides the session's own keys (as ResumeSession and
  TerminateSession have them), so a policy can allow watching and not typing. The token is single
  use, bound to the joiner and the session, and opens the session's StreamUrl on the gateway node
  that relays it (so a joiner anywhere in a cluster reaches the one node with the session's bytes).
- ``SetSessionJoinPolicy`` {SessionId, AllowJoins} → {SessionId, AllowJoins}: the session's owner
  refuses (or allows again) joins of their own session; refusing also ends the joiners already
  there. Only the owner may: it narrows who sees the session, so it needs no policy of its own,
  and it is audited as ``openssm:SetSessionJoinPolicy``.
"""

from __future__ import annotations

import datetime as dt
import urllib.parse
from typing import Any, Final

from openssm.api.access.vocabulary import TARGET_PREFIX
from openssm.api.errors import ApiError
from openssm.api.registry import json_action
from openssm.api.request import ApiRequest
from openssm.api.ssm_sessions import SESSION_ID_PATTERN, stream_url
from openssm.api.validation import required_string
from openssm.bus import node_channel
from openssm.iam.arn import session_arn
from openssm.protocol.joining import LAST_SCREEN_OPTION, JoinMode, joinable
from openssm.protocol.session_status import TERMINABLE_STATUSES
from openssm.store import audit_log, channel_tokens, gateway_nodes, ids, session_joins, sessions
from openssm.store.channel_tokens import TokenKind
from openssm.store.sessions import SessionRow

JOIN_SESSION: Final = "openssm:JoinSession"
SET_SESSION_JOIN_POLICY: Final = "openssm:SetSessionJoinPolicy"
JOIN_MODE_KEY: Final = "openssm:JoinMode"
OWNER_STATEMENT: Final = "the session's owner"  # the audit row's "matched statement"


def _session_context(row: SessionRow) -> dict[str, list[str]]:
    """The session's own condition keys, as ResumeSession and TerminateSession have them."""
    return {
        "ssm:resourceTag/aws:ssmmessages:session-id": [row.session_id],
        "ssm:resourceTag/aws:ssmmessages:target-id": [row.target],
    }


def _flag(body: dict[str, Any], member: str, default: bool) -> bool:
    value = body.get(member, default)
    if not isinstance(value, bool):
        raise ApiError("ValidationException", f"{member} must be a boolean.")
    return value


@json_action(TARGET_PREFIX, "JoinSession")
async def join_session(request: ApiRequest, body: dict[str, Any]) -> dict[str, Any]:
    session_id = _session_id(body)
    mode = JoinMode.READ_ONLY if _flag(body, "ReadOnly", False) else JoinMode.READ_WRITE
    last_screen = _flag(body, "LastScreen", False)
    engine = request.services.engine
    row = await sessions.get(engine, session_id)
    context = _session_context(row) if row else {}
    context[JOIN_MODE_KEY] = [mode]
    arn = session_arn(request.region, request.account, session_id)
    await request.authorize(JOIN_SESSION, [arn], context, detail={"sessionId": session_id, "joinMode": mode})
    if row is None or row.status not in TERMINABLE_STATUSES:
        raise ApiError("DoesNotExistException", f"Session {session_id} is not active.")
    why_not = joinable(row.as_mapping())
    if why_not is not None:
        raise ApiError("InvalidOperationRequest", f"{why_not}: {session_id} cannot be joined.")
    if await session_joins.refuses(engine, session_id):
        raise ApiError("AccessDeniedException", f"The owner of session {session_id} refuses joins.")
    now = request.now()
    alive = await gateway_nodes.alive(engine, now=now, own_node=request.services.config.node_id)
    if row.node_id is None or row.node_id not in alive:
        raise ApiError("TargetNotConnected", f"{row.target} is not connected.")
    token = ids.bearer_token()
    await channel_tokens.issue(
        engine,
        token,
        kind=TokenKind.JOIN_READ_ONLY if mode is JoinMode.READ_ONLY else TokenKind.JOIN_READ_WRITE,
        channel_id=session_id,
        principal_arn=request.require_identity().principal.arn,
        now=now,
        ttl=dt.timedelta(seconds=request.services.config.token_ttl_seconds),
    )
    url = stream_url(alive[row.node_id], session_id)
    if last_screen:
        url += "&" + urllib.parse.urlencode({LAST_SCREEN_OPTION: "1"})
    return {"SessionId": session_id, "TokenValue": token, "StreamUrl": url}


def _session_id(body: dict[str, Any]) -> str:
    return required_string(body, "SessionId", pattern=SESSION_ID_PATTERN)


@json_action(TARGET_PREFIX, "SetSessionJoinPolicy")
async def set_session_join_policy(request: ApiRequest, body: dict[str, Any]) -> dict[str, Any]:
    session_id = _session_id(body)
    allow = _flag(body, "AllowJoins", True)
    principal = request.require_identity().principal
    engine = request.services.engine
    row = await sessions.get(engine, session_id)
    arn = session_arn(request.region, request.account, session_id)
    owner = row is not None and row.owner_arn == principal.arn
    now = request.now()
    await audit_log.record(
        engine,
        principal_arn=principal.arn,
        action=SET_SESSION_JOIN_POLICY,
        resource=arn,
        decision="allowed" if owner else "implicitDeny",
        matched_statement=OWNER_STATEMENT if owner else None,
        source_ip=request.facts.source_ip,
        detail={"sessionId": session_id, "allowJoins": allow},
        now=now,
    )
    if row is None or not owner:
        raise ApiError(
            "AccessDeniedException",
            f"User: {principal.arn} is not authorized to perform: {SET_SESSION_JOIN_POLICY} on resource: "
            f"{arn} because only the session's owner may",
        )
    if row.status not in TERMINABLE_STATUSES:
        raise ApiError("DoesNotExistException", f"Session {session_id} is not active.")
    await session_joins.set_refusal(engine, session_id, refuse=not allow, by=principal.arn, now=now)
    if not allow and row.node_id is not None:
        await request.services.bus.publish(
            node_channel.node_channel(row.node_id), node_channel.joins_refused(session_id)
        )
    return {"SessionId": session_id, "AllowJoins": allow}
