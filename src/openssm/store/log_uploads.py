"""Queries for the log shipping queue (``log_uploads``) and the session columns it fills in."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from openssm.store.tables import log_uploads, sessions

STREAMING = "streaming"  # CloudWatch while the session runs: ship lines as they come
PENDING = "pending"  # ship everything that is left, then done
DONE = "done"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def add(
    engine: AsyncEngine,
    *,
    session_id: str,
    node_id: str,
    sink: str,
    destination: str,
    local_path: str,
    status: str = PENDING,
    encryption: str | None = None,
) -> int:
    now = utcnow()
    async with engine.begin() as conn:
        result = await conn.execute(
            sa.insert(log_uploads).values(
                session_id=session_id,
                node_id=node_id,
                sink=sink,
                destination=destination,
                local_path=local_path,
                encryption=encryption,
                status=status,
                shipped_bytes=0,
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
        )
        key = result.inserted_primary_key
        assert key is not None
        return int(key[0])


async def finish_streaming(engine: AsyncEngine, session_id: str) -> None:
    """The session ended: its streaming uploads ship what is left and complete."""
    async with engine.begin() as conn:
        await conn.execute(
            sa.update(log_uploads)
            .where(log_uploads.c.session_id == session_id, log_uploads.c.status == STREAMING)
            .values(status=PENDING, next_attempt_at=utcnow())
        )


async def due(engine: AsyncEngine, node_id: str, now: dt.datetime, limit: int = 50) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(log_uploads)
            .where(
                log_uploads.c.node_id == node_id,
                log_uploads.c.status.in_((STREAMING, PENDING)),
                log_uploads.c.next_attempt_at <= now,
            )
            .order_by(log_uploads.c.id)
            .limit(limit)
        )
        return [dict(row) for row in rows.mappings()]


async def for_session(engine: AsyncEngine, session_id: str) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(log_uploads).where(log_uploads.c.session_id == session_id).order_by(log_uploads.c.id)
        )
        return [dict(row) for row in rows.mappings()]


async def all_uploads(engine: AsyncEngine) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = await conn.execute(sa.select(log_uploads).order_by(log_uploads.c.id))
        return [dict(row) for row in rows.mappings()]


async def record_progress(engine: AsyncEngine, upload_id: int, shipped_bytes: int) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            sa.update(log_uploads)
            .where(log_uploads.c.id == upload_id)
            .values(shipped_bytes=shipped_bytes, attempts=0, last_error=None)
        )


async def record_failure(engine: AsyncEngine, upload_id: int, error: str, retry_at: dt.datetime) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            sa.update(log_uploads)
            .where(log_uploads.c.id == upload_id)
            .values(attempts=log_uploads.c.attempts + 1, last_error=error[:1024], next_attempt_at=retry_at)
        )


async def complete(
    engine: AsyncEngine, upload: dict[str, Any], *, output_url: str | None, column: str | None
) -> None:
    """Mark one upload done and, when it is the session's S3 log or CloudWatch stream, say so."""
    now = utcnow()
    async with engine.begin() as conn:
        await conn.execute(
            sa.update(log_uploads)
            .where(log_uploads.c.id == upload["id"])
            .values(status=DONE, completed_at=now, last_error=None)
        )
        if output_url is not None and column in ("output_s3_url", "output_cloudwatch_url"):
            await conn.execute(
                sa.update(sessions)
                .where(sessions.c.session_id == upload["session_id"])
                .values({column: output_url})
            )


async def set_recording_path(engine: AsyncEngine, session_id: str, path: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            sa.update(sessions).where(sessions.c.session_id == session_id).values(recording_path=path)
        )


async def backlog(engine: AsyncEngine, node_id: str) -> int:
    """Uploads ``node_id`` has still to ship (streaming or pending, due or waiting for a retry)."""
    async with engine.connect() as conn:
        count = await conn.scalar(
            sa.select(sa.func.count())
            .select_from(log_uploads)
            .where(log_uploads.c.node_id == node_id, log_uploads.c.status.in_((STREAMING, PENDING)))
        )
        return int(count or 0)
