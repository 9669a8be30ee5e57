"""What users, groups and roles (the holders of policies) share in the store: existence checks,
unique names, listing by path, and tags."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Final, Generic, Literal

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql import Executable

from openssm.store.errors import EntityAlreadyExists, LimitExceeded, NoSuchEntity
from openssm.store.rows import Db, R, every, first, reading, writing
from openssm.store.tables import iam_group_members, iam_groups, iam_roles, iam_users

HolderType = Literal["user", "group", "role"]
TaggedType = Literal["user", "role"]

MAX_TAGS: Final = 50
TABLES: Final[dict[HolderType, sa.Table]] = {"user": iam_users, "group": iam_groups, "role": iam_roles}


def not_found(holder_type: HolderType, name: str) -> NoSuchEntity:
    return NoSuchEntity(f"The {holder_type} with name {name} cannot be found.")


async def exists(db: Db, holder_type: HolderType, name: str) -> bool:
    table = TABLES[holder_type]
    async with reading(db) as conn:
        return (await conn.execute(sa.select(table.c.name).where(table.c.name == name))).first() is not None


async def require(db: Db, holder_type: HolderType, name: str) -> None:
    """NoSuchEntity unless the user, group or role exists."""
    if not await exists(db, holder_type, name):
        raise not_found(holder_type, name)


async def insert_or_conflict(db: Db, statement: Executable, conflict: str) -> None:
    """Insert; EntityAlreadyExists if a concurrent create won the race (the transaction rolls back)."""
    async with writing(db) as conn:
        try:
            await conn.execute(statement)
        except IntegrityError:
            raise EntityAlreadyExists(conflict) from None


@dataclasses.dataclass(frozen=True, slots=True)
class Rows(Generic[R]):
    """Look-ups of one kind of holder, as typed rows."""

    holder_type: HolderType
    row_type: type[R]

    async def insert(self, db: Db, row: R, **columns: Any) -> R:
        """A new user, group or role (``row`` and any further ``columns``); EntityAlreadyExists if
        its name is taken in any letter case."""
        table, values = TABLES[self.holder_type], {**dataclasses.asdict(row), **columns}
        name = str(values["name"])
        conflict = f"{self.holder_type.capitalize()} with name {name} already exists."
        async with writing(db) as conn:
            same_name = sa.select(table.c.name).where(sa.func.lower(table.c.name) == name.lower())
            if (await conn.execute(same_name)).first() is not None:
                raise EntityAlreadyExists(conflict)
            await insert_or_conflict(conn, sa.insert(table).values(**values), conflict)
        return row

    async def get(self, db: Db, name: str) -> R | None:
        table = TABLES[self.holder_type]
        return await first(db, sa.select(table).where(table.c.name == name), self.row_type)

    async def list_by_path(self, db: Db, path_prefix: str = "/") -> list[R]:
        """Those whose path starts with ``path_prefix``, by name."""
        table = TABLES[self.holder_type]
        query = sa.select(table).where(table.c.path.startswith(path_prefix, autoescape=True))
        return await every(db, query.order_by(table.c.name), self.row_type)

    async def by_membership(self, db: Db, other_name: str) -> list[R]:
        """Users in the group ``other_name``, or groups of the user ``other_name``, by name."""
        table = TABLES[self.holder_type]
        members = iam_group_members.c
        own, other = (
            (members.user_name, members.group_name)
            if self.holder_type == "user"
            else (
                members.group_name,
                members.user_name,
            )
        )
        query = sa.select(table).join(iam_group_members, own == table.c.name).where(other == other_name)
        return await every(db, query.order_by(table.c.name), self.row_type)


async def update_tags(
    db: Db, holder_type: TaggedType, name: str, add: Mapping[str, str], remove: Sequence[str]
) -> None:
    table = TABLES[holder_type]
    async with writing(db) as conn:
        current = (await conn.execute(sa.select(table.c.tags).where(table.c.name == name))).first()
        if current is None:
            raise not_found(holder_type, name)
        tags: dict[str, Any] = dict(current[0] or {})
        tags.update(add)
        for key in remove:
            tags.pop(key, None)
        if len(tags) > MAX_TAGS:
            raise LimitExceeded(f"Cannot exceed quota for TagsPer{holder_type.capitalize()}: {MAX_TAGS}.")
        await conn.execute(sa.update(table).where(table.c.name == name).values(tags=tags))
