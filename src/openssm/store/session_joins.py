"""Whether a session's owner refuses joins (``session_join_refusals``): a row while they do.

Read by the API (JoinSession refuses at once) and by the gateway node (a token issued before the
owner changed their mind still cannot get in)."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from openssm.store.rows import Db, execute, scalars, writing
from openssm.store.tables import session_join_refusals


async def refuses(db: Db, session_id: str) -> bool:
    query = sa.select(session_join_refusals.c.session_id).where(
        session_join_refusals.c.session_id == session_id
    )
    return bool(await scalars(db, query))


async def set_refusal(db: Db, session_id: str, *, refuse: bool, by: str, now: dt.datetime) -> None:
    """Refuse (or allow again) joins of ``session_id``; repeating either is harmless."""
    async with writing(db) as conn:
        await execute(
            conn, sa.delete(session_join_refusals).where(session_join_refusals.c.session_id == session_id)
        )
        if refuse:
            await execute(
                conn,
                sa.insert(session_join_refusals).values(session_id=session_id, refused_by=by, refused_at=now),
            )
