"""Turning a credential's owner (user name, or managed instance + role) into a ``Principal``."""

from __future__ import annotations

from openssm.iam.arn import assumed_role_arn
from openssm.iam.principal import Principal
from openssm.store.iam import roles, users
from openssm.store.iam.roles import RoleRow
from openssm.store.rows import Db


async def user_principal(db: Db, account: str, user_name: str) -> Principal | None:
    user = await users.get(db, user_name)
    if user is None:
        return None
    return Principal(
        arn=user.arn, account=account, type="User", user_id=user.user_id, username=user.name, tags=user.tags
    )


async def assumed_role_principal(db: Db, account: str, role_name: str, session_name: str) -> Principal | None:
    role = await roles.get(db, role_name)
    return None if role is None else role_session_principal(account, role, session_name)


def role_session_principal(account: str, role: RoleRow, session_name: str) -> Principal:
    """The principal of a session of ``role`` named ``session_name``."""
    return Principal(
        arn=assumed_role_arn(account, role.name, session_name),
        account=account,
        type="AssumedRole",
        user_id=f"{role.role_id}:{session_name}",
        username=None,
        session_name=session_name,
        role_name=role.name,
        tags=role.tags,
    )
