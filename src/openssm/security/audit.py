"""The audit trail: one row per authorisation decision, naming the statements that decided it."""

from __future__ import annotations

import dataclasses
import datetime as dt

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from openssm.iam import MatchedStatement
from openssm.store.tables import audit_log


def describe_matches(matched: tuple[MatchedStatement, ...]) -> str | None:
    if not matched:
        return None
    parts = []
    for statement in matched:
        sid = f" ({statement.sid})" if statement.sid else ""
        parts.append(f"{statement.effect} {statement.source} statement {statement.index}{sid}")
    return "; ".join(parts)[:4000]


async def record(
    engine: AsyncEngine,
    *,
    principal_arn: str,
    action: str,
    resource: str,
    decision: str,
    matched: tuple[MatchedStatement, ...],
    source_ip: str,
    now: dt.datetime,
) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            sa.insert(audit_log).values(
                time=now,
                principal_arn=principal_arn,
                action=action,
                resource=resource,
                decision=decision,
                matched_statement=describe_matches(matched),
                source_ip=source_ip,
            )
        )


@dataclasses.dataclass(frozen=True, slots=True)
class AuditQuery:
    """What to look up in the audit trail (newest first). ``before_id`` continues a listing."""

    start: dt.datetime | None = None
    end: dt.datetime | None = None
    event_id: int | None = None
    event_name: str | None = None  # the action without its service prefix, e.g. StartSession
    event_source: str | None = None  # the service prefix, e.g. ssm
    principal_name: str | None = None  # last path part of the principal ARN (user name, mi- id)
    resource: str | None = None
    before_id: int | None = None
    limit: int = 50


async def lookup(engine: AsyncEngine, query: AuditQuery) -> list[dict[str, object]]:
    """Audit rows matching ``query``, newest first, at most ``query.limit``."""
    statement = sa.select(audit_log).order_by(audit_log.c.id.desc()).limit(query.limit)
    conditions = []
    if query.start is not None:
        conditions.append(audit_log.c.time >= query.start)
    if query.end is not None:
        conditions.append(audit_log.c.time <= query.end)
    if query.event_id is not None:
        conditions.append(audit_log.c.id == query.event_id)
    if query.event_name is not None:
        conditions.append(audit_log.c.action.endswith(f":{query.event_name}", autoescape=True))
    if query.event_source is not None:
        conditions.append(audit_log.c.action.startswith(f"{query.event_source}:", autoescape=True))
    if query.principal_name is not None:
        conditions.append(audit_log.c.principal_arn.endswith(f"/{query.principal_name}", autoescape=True))
    if query.resource is not None:
        conditions.append(audit_log.c.resource == query.resource)
    if query.before_id is not None:
        conditions.append(audit_log.c.id < query.before_id)
    if conditions:
        statement = statement.where(sa.and_(*conditions))
    async with engine.connect() as conn:
        return [dict(row._mapping) for row in await conn.execute(statement)]
