"""Authorisation: evaluate the caller's identity policies for an action on each resource, and audit it."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, NoReturn, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

from openssm.iam import AuthzRequest, MatchedStatement, evaluate
from openssm.iam.principal import Principal
from openssm.security.errors import AccessDenied
from openssm.security.facts import RequestFacts
from openssm.security.identity import Identity
from openssm.security.policies import cached_policies_for
from openssm.services import Services
from openssm.store import audit_log
from openssm.store.db import patiently
from openssm.store.rows import Work, queued_write, writing

T = TypeVar("T")

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


class AuditBatch:
    """Allowed decisions not yet written: :meth:`transaction` writes them in the same transaction
    as what they allowed (one commit instead of two on a session's way to its prompt), and
    :func:`audited` writes whatever is still held when the call ends otherwise."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def take(self) -> list[dict[str, Any]]:
        rows, self.rows = self.rows, []
        return rows

    @contextlib.asynccontextmanager
    async def transaction(self, services: Services) -> AsyncIterator[AsyncConnection]:
        """A write transaction that begins with the held rows; they count as written once it
        commits (if it rolls back, :func:`audited` still writes them)."""
        async with writing(services.engine) as conn:
            if self.rows:
                await audit_log.record_many(conn, self.rows)
            yield conn
        self.rows.clear()

    async def queued_write(self, services: Services, work: Work[T]) -> T:
        """:meth:`transaction` for paths many callers take at once (``store.rows.queued_write``:
        group-committed on SQLite): the held rows, then ``work``."""
        rows = self.take()

        async def write(conn: AsyncConnection) -> T:
            if rows:
                await audit_log.record_many(conn, rows)
            return await work(conn)

        try:
            return await queued_write(services.engine, write)
        except BaseException:
            self.rows[:0] = rows  # not written: audited() writes them
            raise


@contextlib.asynccontextmanager
async def audited(services: Services) -> AsyncIterator[AuditBatch]:
    """A batch for :func:`authorize`: every decision made inside is in the audit log by the end,
    whether or not the call got as far as the transaction of what was allowed."""
    batch = AuditBatch()
    try:
        yield batch
    finally:
        if batch.rows:
            rows = batch.take()
            # Tried again while the pool is busy: the decisions must not be lost to a wave that
            # throttled the call itself (a control channel's open refused with 1013, say).
            await patiently(lambda: audit_log.record_many(services.engine, rows), "audit rows")


async def authorize(
    services: Services,
    identity: Identity,
    action: str,
    resources: Sequence[str],
    facts: RequestFacts,
    extra_context: Mapping[str, Sequence[str]] = _NO_EXTRA,
    *,
    detail: dict[str, Any] | None = None,
    batch: AuditBatch | None = None,
) -> None:
    """Raise ``AccessDenied`` unless every resource is allowed; each decision is written to the audit log
    (with ``detail``, what the call asked for: CloudTrail's ``requestParameters``). With ``batch``
    (see :func:`audited`), allowed decisions are held in it, to be written in the transaction of
    what they allow; denials are written at once either way."""
    now = services.clock.now()
    policies = await cached_policies_for(services, identity.principal)
    context = request_context(identity, facts, now, extra_context)
    for resource in resources:
        result = evaluate(policies, AuthzRequest(identity.principal, action, resource, context))
        row: dict[str, Any] = {
            "time": now,
            "principal_arn": identity.principal.arn,
            "action": action,
            "resource": resource,
            "decision": result.decision,
            "matched_statement": describe_matches(result.matched),
            "source_ip": facts.source_ip,
            "detail": detail,
        }
        if batch is not None and result.decision == "allowed":
            batch.rows.append(row)  # written with what it allows (AuditBatch.transaction)
        else:  # a denial is written before the caller hears of it, with whatever was held back
            held = batch.take() if batch is not None else []
            await audit_log.record_many(services.engine, [*held, row])
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
