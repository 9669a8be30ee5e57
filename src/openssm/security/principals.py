"""Turning a credential's owner (user name, or managed instance + role) into a ``Principal``."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from openssm.iam.principal import Principal
from openssm.store.tables import iam_roles, iam_users


async def user_principal(engine: AsyncEngine, account: str, user_name: str) -> Principal | None:
    async with engine.connect() as conn:
        row = (
            (await conn.execute(sa.select(iam_users).where(iam_users.c.name == user_name))).mappings().first()
        )
    if row is None:
        return None
    return Principal(
        arn=row["arn"],
        account=account,
        type="User",
        user_id=row["user_id"],
        username=row["name"],
        tags=dict(row["tags"] or {}),
    )


async def assumed_role_principal(
    engine: AsyncEngine, account: str, role_name: str, session_name: str
) -> Principal | None:
    async with engine.connect() as conn:
        row = (
            (await conn.execute(sa.select(iam_roles).where(iam_roles.c.name == role_name))).mappings().first()
        )
    if row is None:
        return None
    return Principal(
        arn=f"arn:aws:sts::{account}:assumed-role/{role_name}/{session_name}",
        account=account,
        type="AssumedRole",
        user_id=f"{row['role_id']}:{session_name}",
        username=None,
        session_name=session_name,
        role_name=role_name,
        tags=dict(row["tags"] or {}),
    )
