"""Browser console sign-ins (``console_sessions``). The cookie carries a random token and the page a
CSRF token derived from it; only their SHA-256 hashes are stored. Sign-out sets ``revoked_at``."""

from __future__ import annotations

import dataclasses
import datetime as dt

import sqlalchemy as sa

from openssm.store.rows import Db, execute, first, writing
from openssm.store.secrets import hash_token
from openssm.store.tables import console_sessions


@dataclasses.dataclass(frozen=True, slots=True)
class ConsoleSessionRow:
    id_hash: str
    user_name: str  # the IAM user the console acts as
    access_key_id: str  # the key used to sign in (must stay Active)
    csrf_hash: str
    expires_at: dt.datetime
    last_seen_at: dt.datetime


async def create(
    db: Db,
    *,
    token: str,
    csrf_token: str,
    user_name: str,
    access_key_id: str,
    source_ip: str,
    now: dt.datetime,
    lifetime: dt.timedelta,
) -> ConsoleSessionRow:
    row = ConsoleSessionRow(
        hash_token(token), user_name, access_key_id, hash_token(csrf_token), now + lifetime, now
    )
    async with writing(db) as conn:
        await conn.execute(
            sa.insert(console_sessions).values(
                **dataclasses.asdict(row), source_ip=source_ip[:64], created_at=now
            )
        )
        # Expired and revoked rows are of no further use; sweep them on each sign-in.
        await conn.execute(
            sa.delete(console_sessions).where(
                sa.or_(console_sessions.c.expires_at < now, console_sessions.c.revoked_at.is_not(None))
            )
        )
    return row


async def find_valid(
    db: Db, token: str, *, now: dt.datetime, touch_after: dt.timedelta
) -> ConsoleSessionRow | None:
    """The unexpired, unrevoked session the token opens; its ``last_seen_at`` is refreshed when it is
    older than ``touch_after``."""
    query = sa.select(console_sessions).where(
        console_sessions.c.id_hash == hash_token(token),
        console_sessions.c.revoked_at.is_(None),
        console_sessions.c.expires_at > now,
    )
    session = await first(db, query, ConsoleSessionRow)
    if session is not None and now - session.last_seen_at >= touch_after:
        await execute(db, _by_id(session.id_hash).values(last_seen_at=now))
    return session


def _by_id(id_hash: str) -> sa.Update:
    return sa.update(console_sessions).where(console_sessions.c.id_hash == id_hash)


async def revoke(db: Db, id_hash: str, *, now: dt.datetime) -> None:
    await execute(db, _by_id(id_hash).where(console_sessions.c.revoked_at.is_(None)).values(revoked_at=now))
