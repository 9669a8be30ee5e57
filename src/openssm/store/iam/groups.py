"""IAM groups (``iam_groups``) and who is in them (``iam_group_members``)."""

from __future__ import annotations

import dataclasses
import datetime as dt

import sqlalchemy as sa

from openssm.iam.arn import group_arn
from openssm.store import ids
from openssm.store.errors import DeleteConflict, NoSuchEntity
from openssm.store.iam import holder_policies, holders
from openssm.store.rows import Db, count, execute, writing
from openssm.store.tables import iam_group_members, iam_groups


@dataclasses.dataclass(frozen=True, slots=True)
class GroupRow:
    name: str
    group_id: str  # AGPA…
    arn: str
    path: str
    created_at: dt.datetime


async def create(db: Db, account: str, name: str, path: str, now: dt.datetime) -> GroupRow:
    return await _rows.insert(
        db, GroupRow(name, ids.unique_id("AGPA"), group_arn(account, name, path), path, now)
    )


_rows = holders.Rows("group", GroupRow)
get = _rows.get
list_by_path = _rows.list_by_path
of_user = _rows.by_membership  # the groups a user is in, by name


def _membership(group_name: str, user_name: str) -> sa.ColumnElement[bool]:
    return sa.and_(iam_group_members.c.group_name == group_name, iam_group_members.c.user_name == user_name)


async def delete(db: Db, name: str) -> None:
    async with writing(db) as conn:
        await holders.require(conn, "group", name)
        members = sa.select(iam_group_members.c.user_name).where(iam_group_members.c.group_name == name)
        if await count(conn, members):
            raise DeleteConflict("Cannot delete entity, must remove users from group first.")
        await holder_policies.refuse_while_any(conn, "group", name)
        await conn.execute(sa.delete(iam_groups).where(iam_groups.c.name == name))


async def _require_both(db: Db, group_name: str, user_name: str) -> None:
    await holders.require(db, "group", group_name)
    await holders.require(db, "user", user_name)


async def add_user(db: Db, group_name: str, user_name: str) -> None:
    """Adding a member twice is not an error (as in AWS)."""
    async with writing(db) as conn:
        await _require_both(conn, group_name, user_name)
        if not await count(conn, sa.select(iam_group_members).where(_membership(group_name, user_name))):
            await conn.execute(
                sa.insert(iam_group_members).values(group_name=group_name, user_name=user_name)
            )


async def remove_user(db: Db, group_name: str, user_name: str) -> None:
    async with writing(db) as conn:
        await _require_both(conn, group_name, user_name)
        if not await execute(conn, sa.delete(iam_group_members).where(_membership(group_name, user_name))):
            raise NoSuchEntity(f"User {user_name} is not in group {group_name}.")
