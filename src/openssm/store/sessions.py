"""Session rows and the single-use client tokens that open their data channels."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from openssm.protocol.session_status import (
    ACTIVE_STATUSES,
    FINAL_STATUSES,
    TERMINABLE_STATUSES,
    SessionStatus,
)
from openssm.store.secrets import hash_token
from openssm.store.tables import channel_tokens, sessions


async def _insert_client_token(
    conn: AsyncConnection,
    session_id: str,
    token: str,
    principal_arn: str,
    now: dt.datetime,
    ttl: dt.timedelta,
) -> None:
    await conn.execute(
        sa.insert(channel_tokens).values(
            token_hash=hash_token(token),
            kind="client",
            channel_id=session_id,
            principal_arn=principal_arn,
            created_at=now,
            expires_at=now + ttl,
        )
    )


async def create(
    engine: AsyncEngine, row: dict[str, Any], *, token: str, now: dt.datetime, token_ttl: dt.timedelta
) -> None:
    """The session row and its first client token, in one transaction."""
    async with engine.begin() as conn:
        await conn.execute(sa.insert(sessions).values(**row))
        await _insert_client_token(conn, row["session_id"], token, row["owner_arn"], now, token_ttl)


async def add_client_token(
    engine: AsyncEngine, session_id: str, token: str, principal_arn: str, now: dt.datetime, ttl: dt.timedelta
) -> None:
    async with engine.begin() as conn:
        await _insert_client_token(conn, session_id, token, principal_arn, now, ttl)


async def get(engine: AsyncEngine, session_id: str) -> dict[str, Any] | None:
    async with engine.connect() as conn:
        row = (
            (await conn.execute(sa.select(sessions).where(sessions.c.session_id == session_id)))
            .mappings()
            .first()
        )
    return dict(row) if row is not None else None


async def list_by_state(engine: AsyncEngine, active: bool) -> list[dict[str, Any]]:
    statuses = ACTIVE_STATUSES if active else FINAL_STATUSES
    async with engine.connect() as conn:
        rows = (
            (
                await conn.execute(
                    sa.select(sessions)
                    .where(sessions.c.status.in_(statuses))
                    .order_by(sessions.c.start_date.desc(), sessions.c.session_id)
                )
            )
            .mappings()
            .all()
        )
    return [dict(row) for row in rows]


async def mark_terminating(engine: AsyncEngine, session_id: str) -> bool:
    """Connecting/Connected/Disconnected → Terminating; False if it was already ending or ended."""
    async with engine.begin() as conn:
        result = await conn.execute(
            sa.update(sessions)
            .where(sessions.c.session_id == session_id, sessions.c.status.in_(TERMINABLE_STATUSES))
            .values(status=SessionStatus.TERMINATING)
        )
    return bool(result.rowcount)


async def mark_terminated(engine: AsyncEngine, session_id: str, reason: str, now: dt.datetime) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            sa.update(sessions)
            .where(sessions.c.session_id == session_id, sessions.c.status.not_in(FINAL_STATUSES))
            .values(status=SessionStatus.TERMINATED, end_date=now, termination_reason=reason)
        )
