"""Live-session join's state in the store.

- Whether a session's owner refuses joins (``session_join_refusals``): a row while they do. Read
  by the API (JoinSession refuses at once) and by the gateway node (a token issued before the
  owner changed their mind still cannot get in).
- How a gateway node renumbers a joined session's stream (``session_splices``,
  ``openssm.gateway.injection``): written before the first message of the gateway's own goes in and
  whenever the numbering moves on, so that a node picking the session up later (after a restart,
  or a crash of the node) goes on with the numbers the ends and the gateway share. No row: the
  stream was never renumbered."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from openssm.store.rows import Db, execute, scalars, writing
from openssm.store.tables import session_join_refusals, session_splices


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


async def save_splice(db: Db, session_id: str, state: Mapping[str, Any], *, now: dt.datetime) -> None:
    """Keep a session's renumbering state (replacing the one kept before)."""
    async with writing(db) as conn:
        where = session_splices.c.session_id == session_id
        if (
            await execute(conn, sa.update(session_splices).where(where).values(state=state, saved_at=now))
            == 0
        ):
            await execute(
                conn, sa.insert(session_splices).values(session_id=session_id, state=state, saved_at=now)
            )


async def splice(db: Db, session_id: str) -> dict[str, Any] | None:
    """The renumbering state kept for a session, or None if its stream was never renumbered."""
    found = await scalars(
        db, sa.select(session_splices.c.state).where(session_splices.c.session_id == session_id)
    )
    return dict(found[0]) if found else None


async def forget_splice(db: Db, session_id: str) -> None:
    await execute(db, sa.delete(session_splices).where(session_splices.c.session_id == session_id))
