"""Live-session join's state in the store.

- Whether a session's owner refuses joins (``session_join_refusals``): a row while they do. Read
  by the API (JoinSession refuses at once) and by the gateway node (a token issued before the
  owner changed their mind still cannot get in).
- Whether a gateway node renumbered a session's stream (``renumbered_sessions``): written before
  the first message of the gateway's own goes in. The numbering lives in that relay's memory, so a
  node that would pick the session up later (after a restart, or a crash of the node) ends it
  instead of relaying it with numbers the ends no longer share."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from openssm.store.rows import Db, execute, scalars, writing
from openssm.store.tables import renumbered_sessions, session_join_refusals


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


async def mark_renumbered(db: Db, session_id: str, *, now: dt.datetime) -> None:
    async with writing(db) as conn:
        query = sa.select(renumbered_sessions.c.session_id).where(
            renumbered_sessions.c.session_id == session_id
        )
        if not (await conn.execute(query)).first():
            await execute(conn, sa.insert(renumbered_sessions).values(session_id=session_id, since=now))


async def renumbered(db: Db, session_id: str) -> bool:
    query = sa.select(renumbered_sessions.c.session_id).where(renumbered_sessions.c.session_id == session_id)
    return bool(await scalars(db, query))
