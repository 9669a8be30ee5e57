"""Authorisation: evaluate the caller's identity policies for an action on each resource, and audit it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from openssm.iam import AuthzRequest, MatchedStatement, evaluate
from openssm.iam.principal import Principal
from openssm.security.errors import AccessDenied
from openssm.security.facts import RequestFacts
from openssm.security.identity import Identity
from openssm.security.policies import policies_for
from openssm.services import Services
from openssm.store import audit_log

_NO_EXTRA: Mapping[str, Sequence[str]] = {}


def principal_arn_for_conditions(principal: Principal) -> str:
    """``aws:PrincipalArn``: for an assumed role AWS gives the role's ARN, not the session's."""
    if principal.type == "AssumedRole" and principal.role_name:
        return f"arn:aws:iam::{principal.account}:role/{principal.role_name}"
    return principal.arn


def request_context(
    identity: Identity, facts: RequestFacts, now: dt.datetime, extra: Mapping[str, Sequence[str]]
) -> dict[str, list[str]]:
    principal = identity.principal
    context: dict[str, list[str]] = {
        "aws:sourceip": [facts.source_ip],
        "aws:securetransport": ["true" if facts.secure_transport else "false"],
        "aws:userid": [principal.user_id],
        "aws:principalarn": [principal_arn_for_conditions(principal)],
        "aws:principalaccount": [principal.account],
        "aws:principaltype": [principal.type],
        "aws:currenttime": [now.strftime("%Y-%m-%dT%H:%M:%SZ")],
        "aws:epochtime": [str(int(now.timestamp()))],
        "aws:requestedregion": [facts.requested_region],
        "aws:resourceaccount": [principal.account],
        "aws:viaawsservice": ["false"],
    }
    if principal.username:
        context["aws:username"] = [principal.username]
    if facts.user_agent is not None:
        context["aws:useragent"] = [facts.user_agent]
    for tag_key, tag_value in principal.tags.items():
        context[f"aws:principaltag/{tag_key.lower()}"] = [tag_value]
    context.update(session_context(identity, now))
    for key, values in extra.items():
        context[key.lower()] = list(values)
    return context


def session_context(identity: Identity, now: dt.datetime) -> dict[str, list[str]]:
    """The keys AWS puts in the context of requests signed with temporary credentials only:
    ``aws:MultiFactorAuthPresent`` (true or false), ``aws:MultiFactorAuthAge`` (seconds since the
    MFA code was checked; only with MFA), ``aws:TokenIssueTime`` and, for a web identity session,
    ``aws:FederatedProvider``. Long-term keys carry none of them, so ``BoolIfExists`` matters."""
    if not identity.temporary:
        return {}
    mfa = identity.mfa_authenticated_at
    context = {"aws:multifactorauthpresent": ["true" if mfa is not None else "false"]}
    if mfa is not None:
        context["aws:multifactorauthage"] = [str(max(0, int((now - mfa).total_seconds())))]
    if identity.token_issued_at is not None:
        context["aws:tokenissuetime"] = [identity.token_issued_at.strftime("%Y-%m-%dT%H:%M:%SZ")]
    if identity.federated_provider is not None:
        context["aws:federatedprovider"] = [identity.federated_provider]
    return context


def describe_matches(matched: tuple[MatchedStatement, ...]) -> str | None:
    """The statements that decided, as the audit trail names them."""
    if not matched:
        return None
    parts = []
    for statement in matched:
        sid = f" ({statement.sid})" if statement.sid else ""
        parts.append(f"{statement.effect} {statement.source} statement {statement.index}{sid}")
    return "; ".join(parts)[:4000]


def denial_message(principal_arn: str, action: str, resource: str, explicit: bool) -> str:
    head = f"User: {principal_arn} is not authorized to perform: {action} on resource: {resource}"
    if explicit:
        return f"{head} with an explicit deny in an identity-based policy"
    return f"{head} because no identity-based policy allows the {action} action"


async def authorize(
    services: Services,
    identity: Identity,
    action: str,
    resources: Sequence[str],
    facts: RequestFacts,
    extra_context: Mapping[str, Sequence[str]] = _NO_EXTRA,
    *,
    detail: dict[str, Any] | None = None,
) -> None:
    """Raise ``AccessDenied`` unless every resource is allowed; each decision is written to the audit log
    (with ``detail``, what the call asked for: CloudTrail's ``requestParameters``)."""
    now = services.clock.now()
    policies = await policies_for(services.engine, identity.principal)
    context = request_context(identity, facts, now, extra_context)
    for resource in resources:
        result = evaluate(policies, AuthzRequest(identity.principal, action, resource, context))
        await audit_log.record(
            services.engine,
            principal_arn=identity.principal.arn,
            action=action,
            resource=resource,
            decision=result.decision,
            matched_statement=describe_matches(result.matched),
            source_ip=facts.source_ip,
            detail=detail,
            now=now,
        )
        if result.decision != "allowed":
            services.metrics.authorization_denied.labels(action).inc()
            raise AccessDenied(
                denial_message(identity.principal.arn, action, resource, result.decision == "explicitDeny"),
                action=action,
                resource=resource,
            )


async def refuse_by_rule(
    services: Services,
    identity: Identity,
    action: str,
    resource: str,
    facts: RequestFacts,
    *,
    rule: str,
    because: str,
    detail: dict[str, Any] | None = None,
) -> NoReturn:
    """Refuse what one of OpenSSM's own rules forbids whatever policies allow, audited as an explicit
    deny with the rule named where a statement would be."""
    principal = identity.principal
    await audit_log.record(
        services.engine,
        principal_arn=principal.arn,
        action=action,
        resource=resource,
        decision="explicitDeny",
        matched_statement=rule,
        source_ip=facts.source_ip,
        detail=detail,
        now=services.clock.now(),
    )
    services.metrics.authorization_denied.labels(action).inc()
    raise AccessDenied(
        f"User: {principal.arn} is not authorized to perform: {action} on resource: {resource} {because}",
        action=action,
        resource=resource,
    )
