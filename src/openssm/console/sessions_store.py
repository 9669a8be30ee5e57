"""Console sign-in sessions in the ``console_sessions`` table (only hashes of the tokens are kept)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import secrets

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from openssm.console.web_security import csrf_token_for
from openssm.store.secrets import hash_token
from openssm.store.tables import console_sessions

SESSION_LIFETIME = dt.timedelta(hours=12)
TOUCH_INTERVAL = dt.timedelta(minutes=1)  # last_seen_at is refreshed at most this often


@dataclasses.dataclass(frozen=True, slots=True)
class ConsoleSession:
    id_hash: str
    user_name: str
    access_key_id: str
    csrf_hash: str
    expires_at: dt.datetime
    last_seen_at: dt.datetime


async def create(
    engine: AsyncEngine, *, user_name: str, access_key_id: str, source_ip: str, now: dt.datetime
) -> tuple[str, ConsoleSession]:
    """A new session; returns the cookie token (shown to the browser once, never stored)."""
    token = secrets.token_urlsafe(32)
    row = ConsoleSession(
        id_hash=hash_token(token),
        user_name=user_name,
        access_key_id=access_key_id,
        csrf_hash=hash_token(csrf_token_for(token)),
        expires_at=now + SESSION_LIFETIME,
        last_seen_at=now,
    )
    async with engine.begin() as conn:
        await conn.execute(
            console_sessions.insert().values(
                id_hash=row.id_hash,
                user_name=user_name,
                access_key_id=access_key_id,
                csrf_hash=row.csrf_hash,
                source_ip=source_ip[:64],
                created_at=now,
                expires_at=row.expires_at,
                last_seen_at=now,
            )
        )
        # Expired and revoked rows are of no further use; sweep them on each sign-in.
        await conn.execute(
            console_sessions.delete().where(
                sa.or_(console_sessions.c.expires_at < now, console_sessions.c.revoked_at.is_not(None))
            )
        )
    return token, row


async def find_valid(engine: AsyncEngine, token: str, now: dt.datetime) -> ConsoleSession | None:
    if not token or len(token) > 128:
        return None
    async with engine.connect() as conn:
        row = (
            (
                await conn.execute(
                    sa.select(console_sessions).where(
                        console_sessions.c.id_hash == hash_token(token),
                        console_sessions.c.revoked_at.is_(None),
                        console_sessions.c.expires_at > now,
                    )
                )
            )
            .mappings()
            .first()
        )
    if row is None:
        return None
    session = ConsoleSession(
        id_hash=row["id_hash"],
        user_name=row["user_name"],
        access_key_id=row["access_key_id"],
        csrf_hash=row["csrf_hash"],
        expires_at=row["expires_at"],
        last_seen_at=row["last_seen_at"],
    )
    if now - session.last_seen_at >= TOUCH_INTERVAL:
        async with engine.begin() as conn:
            await conn.execute(
                console_sessions.update()
                .where(console_sessions.c.id_hash == session.id_hash)
                .values(last_seen_at=now)
            )
    return session


async def revoke(engine: AsyncEngine, id_hash: str, now: dt.datetime) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            console_sessions.update()
            .where(console_sessions.c.id_hash == id_hash, console_sessions.c.revoked_at.is_(None))
            .values(revoked_at=now)
        )
