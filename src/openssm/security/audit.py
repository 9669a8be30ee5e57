"""The audit trail: one row per authorisation decision, naming the statements that decided it."""

from __future__ import annotations

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
