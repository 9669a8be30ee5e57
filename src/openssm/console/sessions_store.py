"""Console sign-in sessions as the console keeps them: a fresh cookie token per sign-in (shown to
the browser once), its CSRF token, a 12-hour lifetime; stored by ``openssm.store.console_sessions``."""

from __future__ import annotations

import datetime as dt
import secrets

from openssm.console.web_security import csrf_token_for
from openssm.store import console_sessions
from openssm.store.console_sessions import ConsoleSessionRow
from openssm.store.rows import Db

SESSION_LIFETIME = dt.timedelta(hours=12)
TOUCH_INTERVAL = dt.timedelta(minutes=1)  # last_seen_at is refreshed at most this often
MAX_TOKEN_CHARS = 128

ConsoleSession = ConsoleSessionRow


async def create(
    db: Db, *, user_name: str, access_key_id: str, source_ip: str, now: dt.datetime
) -> tuple[str, ConsoleSession]:
    """A new session; returns the cookie token (shown to the browser once, never stored)."""
    token = secrets.token_urlsafe(32)
    row = await console_sessions.create(
        db,
        token=token,
        csrf_token=csrf_token_for(token),
        user_name=user_name,
        access_key_id=access_key_id,
        source_ip=source_ip,
        now=now,
        lifetime=SESSION_LIFETIME,
    )
    return token, row


async def find_valid(db: Db, token: str, now: dt.datetime) -> ConsoleSession | None:
    if not token or len(token) > MAX_TOKEN_CHARS:
        return None
    return await console_sessions.find_valid(db, token, now=now, touch_after=TOUCH_INTERVAL)


async def revoke(db: Db, id_hash: str, now: dt.datetime) -> None:
    await console_sessions.revoke(db, id_hash, now=now)
