"""What the store's retry queues (``log_uploads``, ``access_webhook_deliveries``) share: a row is due at
once when queued, and each failed attempt is counted with its error (cut to the column's length)."""

from __future__ import annotations

import datetime as dt
from typing import Final

import sqlalchemy as sa

from openssm.store.rows import Db, execute

ERROR_CHARS: Final = 1024  # the ``last_error`` column's length


async def enqueue(db: Db, table: sa.Table, *, now: dt.datetime, **values: object) -> None:
    """Queue a row of ``table`` with ``values`` at ``now``: no attempt yet, due at once."""
    await execute(db, sa.insert(table).values(**values, attempts=0, next_attempt_at=now, created_at=now))


def failed_attempt(table: sa.Table, error: str) -> dict[str, object]:
    """The retry columns after one more failed attempt that ended with ``error``."""
    return {"attempts": table.c.attempts + 1, "last_error": error[:ERROR_CHARS]}
