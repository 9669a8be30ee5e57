"""IAM roles (``iam_roles``): what managed nodes (and simulated sessions) act as."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping

import sqlalchemy as sa

from openssm.iam.arn import role_arn
from openssm.store import ids
from openssm.store.iam import holder_policies, holders
from openssm.store.rows import Db, Tags, writing
from openssm.store.tables import iam_roles


@dataclasses.dataclass(frozen=True, slots=True)
class RoleRow:
    name: str
    role_id: str  # AROA…
    arn: str
    path: str
    assume_role_policy: str  # the trust policy, JSON
    description: str | None
    created_at: dt.datetime
    tags: Tags

    @property
    def trusts_ssm(self) -> bool:
        """Whether managed nodes (the ``ssm.amazonaws.com`` service) may act as this role."""
        return "ssm.amazonaws.com" in self.assume_role_policy


async def create(
    db: Db,
    account: str,
    name: str,
    path: str,
    trust_policy: str,
    description: str | None,
    tags: Mapping[str, str],
    now: dt.datetime,
) -> RoleRow:
    row = RoleRow(
        name,
        ids.unique_id("AROA"),
        role_arn(account, name, path),
        path,
        trust_policy,
        description,
        now,
        dict(tags),
    )
    return await _rows.insert(db, row)


_rows = holders.Rows("role", RoleRow)
get = _rows.get
list_by_path = _rows.list_by_path


async def delete(db: Db, name: str) -> None:
    async with writing(db) as conn:
        await holders.require(conn, "role", name)
        await holder_policies.refuse_while_any(conn, "role", name)
        await conn.execute(sa.delete(iam_roles).where(iam_roles.c.name == name))
