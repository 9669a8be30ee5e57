"""MGS REST calls the agent makes before dialling a channel: ``CreateControlChannel`` and
``CreateDataChannel``. Success is HTTP 201 with an XML body carrying a single-use token (§4.1)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Final
from xml.sax.saxutils import escape

from aiohttp import web

from openssm import security
from openssm.errors import OpenSSMError
from openssm.gateway.agent_auth import authenticate_agent, authorize_agent, claimed_key, instance_arn
from openssm.iam.arn import session_arn
from openssm.ops.refusals import refused, unauthenticated
from openssm.protocol.session_status import FINAL_STATUSES
from openssm.services import Services
from openssm.store import channel_tokens, gateway_nodes, instances, sessions, trace
from openssm.store.channel_tokens import TokenKind
from openssm.transport.bounded_read import read_request_body

log = logging.getLogger(__name__)

MAX_BODY_BYTES: Final = 64 * 1024  # the real bodies are ~100 bytes
KIND_CONTROL: Final = TokenKind.AGENT_CONTROL
KIND_DATA: Final = TokenKind.AGENT_DATA


def error_response(code: str, message: str, status: int) -> web.Response:
    # The agent logs the body and recognises an "<AccessDeniedException>" substring.
    body = f"<{code}><Message>{escape(message)}</Message></{code}>"
    return web.Response(status=status, text=body, content_type="application/xml")


def token_response(root: str, token: str) -> web.Response:
    body = (
        f"<{root}><MessageSchemaVersion>1.0</MessageSchemaVersion>"
        f"<TokenValue>{escape(token)}</TokenValue></{root}>"
    )
    return web.Response(status=201, text=body, content_type="application/xml")


async def read_body(request: web.Request) -> bytes:
    body = await read_request_body(request, MAX_BODY_BYTES)
    if body:
        try:
            parsed = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise BadRequest("request body is not JSON") from exc
        if not isinstance(parsed, dict):
            raise BadRequest("request body is not a JSON object")
    return body


class BadRequest(OpenSSMError):
    pass


class Refused(OpenSSMError):
    """The call is refused with this error (code and message as the agent expects them)."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


@dataclasses.dataclass(slots=True)
class Call:
    """One MGS REST call, as far as it is known: for the log line of a refusal."""

    request: web.Request
    action: str
    resource: str
    principal: str | None = None


async def issue_token(
    services: Services, batch: security.AuditBatch, kind: TokenKind, channel_id: str, principal_arn: str
) -> str:
    """A new token, stored in one transaction with the audit rows of the decisions that allowed it."""
    token = secrets.token_urlsafe(32)
    now, ttl = services.clock.now(), dt.timedelta(seconds=services.config.token_ttl_seconds)
    # Group-committed: a fleet opens its control channels at once (a new fleet, a restarted server).
    await batch.queued_write(
        services,
        lambda conn: channel_tokens.issue(
            conn, token, kind=kind, channel_id=channel_id, principal_arn=principal_arn, now=now, ttl=ttl
        ),
    )
    return token


async def registered(services: Services, instance_id: str) -> bool:
    """Whether the instance is registered and not deregistered: known at once when this node keeps
    what it last reported (an entry holds only while the authorisation generation does, and
    deregistering or deleting a node bumps it), else read."""
    if services.authz.instances.get(instance_id, await services.authz_generation()) is not None:
        return True
    instance = await instances.get(services.engine, instance_id)
    return instance is not None and not instance.deregistered


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _answer(
    services: Services, root: str, call: Call, issue: Callable[[security.AuditBatch], Awaitable[str]]
) -> web.StreamResponse:
    """``issue(batch)`` returns the new token (answered as ``<root>``), its decisions audited
    through ``batch``; the refusals it raises become the XML errors the agent understands, each
    logged once here."""
    try:
        with trace.step("mgs", call.action, call.request.match_info.get("session_id", "")):
            async with security.audited(services) as batch:
                token = await issue(batch)
        return token_response(root, token)
    except security.AuthError as exc:
        code, message, status = exc.code, exc.message, exc.status
    except security.AccessDenied as exc:
        code, message, status = "AccessDeniedException", exc.message, 403
    except Refused as exc:
        code, message, status = exc.code, exc.message, exc.status
    except BadRequest as exc:
        code, message, status = "ValidationException", str(exc), 400
    refused(
        "mgs",
        principal=call.principal or unauthenticated(claimed_key(call.request)),
        action=call.action,
        resource=call.resource,
        code=code,
        reason=message,
    )
    return error_response(code, message, status)


def make_handlers(services: Services) -> tuple[Handler, Handler]:
    config = services.config

    async def create_control_channel(request: web.Request) -> web.StreamResponse:
        instance_id = request.match_info["instance_id"]
        action = "ssmmessages:CreateControlChannel"
        call = Call(request, action, instance_arn(config, instance_id))

        async def issue(batch: security.AuditBatch) -> str:
            body = await read_body(request)
            identity = await authenticate_agent(services, request, body)
            call.principal = identity.principal.arn
            if not await registered(services, instance_id):
                raise Refused("InvalidInstanceId", f"Instance {instance_id} is not registered", 400)
            await authorize_agent(services, request, identity, action, instance_id, [call.resource], batch)
            return await issue_token(services, batch, KIND_CONTROL, instance_id, identity.principal.arn)

        return await _answer(services, "CreateControlChannelOutput", call, issue)

    async def create_data_channel(request: web.Request) -> web.StreamResponse:
        session_id = request.match_info["session_id"]
        action = "ssmmessages:CreateDataChannel"
        call = Call(request, action, session_arn(config.region, config.account_id, session_id))

        async def issue(batch: security.AuditBatch) -> str:
            body = await read_body(request)
            identity = await authenticate_agent(services, request, body)
            call.principal = identity.principal.arn
            session = await sessions.get(services.engine, session_id)
            if session is None or session.status in FINAL_STATUSES:
                # The agent does not retry on exactly this text.
                raise Refused("ValidationException", "Session is already terminated", 400)
            await authorize_agent(services, request, identity, action, session.target, [call.resource], batch)
            if session.node_id != config.node_id and session.node_id in await gateway_nodes.alive(
                services.engine, now=services.clock.now(), own_node=config.node_id
            ):
                # An agent that failed over before its node is known to be dead: it tries again,
                # and once the node is found dead this node carries the session on.
                raise Refused("ServiceUnavailable", f"Session {session_id} is served by another node", 503)
            return await issue_token(services, batch, KIND_DATA, session_id, identity.principal.arn)

        return await _answer(services, "CreateDataChannelOutput", call, issue)

    return create_control_channel, create_data_channel
