"""Who an agent is (SigV4 for service ``ssmmessages``) and what it may open.

An instance identity (a managed instance's role session named after its ``mi-``/``i-`` id) may
open only its own control channel and data channels of sessions that target it. Other callers (a
node that joined with the IAM credentials of a user or role) get what their IAM policies allow, by
AWS's action names: ``ssmmessages:CreateControlChannel`` / ``CreateDataChannel`` for the REST calls,
``ssmmessages:OpenControlChannel`` / ``OpenDataChannel`` for the WebSockets.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from aiohttp import web

from openssm import security
from openssm.auth.sigv4 import HttpRequest, SigV4Error, parse_request
from openssm.iam.arn import ec2_instance_arn, managed_instance_arn
from openssm.iam.principal import Principal
from openssm.security.facts import peer_address
from openssm.services import ServerConfig, Services

SERVICE: Final = "ssmmessages"
INSTANCE_ID: Final = re.compile(r"^(mi-[0-9a-f]{17}|i-[0-9a-f]{8}(?:[0-9a-f]{9})?)$")


def http_request(request: web.Request, body: bytes) -> HttpRequest:
    """The request exactly as received (raw path and query, raw headers) for SigV4."""
    path, _, query = request.raw_path.partition("?")
    headers = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in request.raw_headers]
    return HttpRequest(method=request.method, path=path, query=query, headers=headers, body=body)


def claimed_key(request: web.Request) -> str | None:
    """The access key id a request is signed with (not a secret), for the log of a refusal."""
    try:
        return parse_request(http_request(request, b"")).access_key_id
    except SigV4Error:
        return None


def is_signed(request: web.Request) -> bool:
    return "Authorization" in request.headers or "X-Amz-Signature" in request.query


def instance_arn(config: ServerConfig, instance_id: str) -> str:
    if instance_id.startswith("mi-"):
        return managed_instance_arn(config.region, config.account_id, instance_id)
    return ec2_instance_arn(config.region, config.account_id, instance_id)


def own_instance(principal: Principal) -> str | None:
    """The instance a principal *is*, when it is an instance's role session."""
    if principal.type == "AssumedRole" and principal.session_name:
        if INSTANCE_ID.match(principal.session_name):
            return principal.session_name
    return None


async def authenticate_agent(services: Services, request: web.Request, body: bytes) -> security.Identity:
    identity = await security.authenticate(
        services, http_request(request, body), peer_ip=peer_address(request)
    )
    if identity.service != SERVICE:
        raise security.AuthError(
            "InvalidSignatureException",
            f"Credential should be scoped to correct service: '{SERVICE}'.",
        )
    return identity


async def authorize_agent(
    services: Services,
    request: web.Request,
    identity: security.Identity,
    action: str,
    instance_id: str,
    resources: Sequence[str],
    batch: security.AuditBatch | None = None,
) -> None:
    own = own_instance(identity.principal)
    if own is not None and own != instance_id:
        services.metrics.authorization_denied.labels(action).inc()
        raise security.AccessDenied(
            f"User: {identity.principal.arn} is not authorized to perform: {action} for {instance_id}",
            action=action,
            resource=resources[0] if resources else None,
        )
    facts = security.client_facts(request, services.config, identity.region)
    source = instance_arn(services.config, instance_id)
    context_key = "ssm:SourceInstanceARN" if instance_id.startswith("mi-") else "ec2:SourceInstanceARN"
    await security.authorize(
        services, identity, action, resources, facts, {context_key: [source]}, batch=batch
    )
