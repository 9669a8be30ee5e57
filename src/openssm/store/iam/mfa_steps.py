"""The TOTP replay guard (``mfa_used_steps``): the last time step accepted from each user's MFA
device. A code is accepted once, on any server node: the step only moves forward, by one atomic
UPDATE (or the first INSERT), so two nodes racing with the same code cannot both win."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from openssm.store.rows import Db, execute, writing
from openssm.store.tables import mfa_used_steps


async def accept(db: Db, user_name: str, step: int) -> bool:
    """True if ``step`` is later than every step accepted for the user before (and is now the last)."""
    async with writing(db) as conn:
        advance = (
            sa.update(mfa_used_steps)
            .where(mfa_used_steps.c.user_name == user_name, mfa_used_steps.c.last_step < step)
            .values(last_step=step)
        )
        if await execute(conn, advance):
            return True
        # No row yet, or one at this step or later (a replay). Insert unless there is a row: of two
        # nodes racing with the same first code, one inserts and the other finds the row.
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        insert = (
            dialect.insert(mfa_used_steps)
            .values(user_name=user_name, last_step=step)
            .on_conflict_do_nothing(index_elements=["user_name"])
        )
        return bool(await execute(conn, insert))


async def forget(db: Db, user_name: str) -> None:
    """The user is gone; a user created later with the same name starts afresh."""
    await execute(db, sa.delete(mfa_used_steps).where(mfa_used_steps.c.user_name == user_name))
