"""IAM entities in the database: users, groups, roles, managed policies and their versions,
attachments, inline policies and the metadata of users' access keys.

Errors carry the AWS IAM code, message and HTTP status, so the Query API can pass them through.
Names are unique case-insensitively, as in AWS (``Alice`` and ``alice`` cannot both exist).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from openssm.errors import OpenSSMError
from openssm.iam.arn import group_arn, policy_arn, role_arn, user_arn
from openssm.store import ids
from openssm.store.tables import (
    access_keys,
    iam_attachments,
    iam_group_members,
    iam_groups,
    iam_inline_policies,
    iam_policies,
    iam_policy_versions,
    iam_roles,
    iam_users,
)

HolderType = Literal["user", "group", "role"]

MAX_POLICY_VERSIONS = 5
MAX_ATTACHED_POLICIES = 10
MAX_ACCESS_KEYS_PER_USER = 2
MAX_TAGS = 50


class IamError(OpenSSMError):
    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def no_such_entity(message: str) -> IamError:
    return IamError("NoSuchEntity", message, 404)


def already_exists(message: str) -> IamError:
    return IamError("EntityAlreadyExists", message, 409)


def delete_conflict(message: str) -> IamError:
    return IamError("DeleteConflict", message, 409)


def limit_exceeded(message: str) -> IamError:
    return IamError("LimitExceeded", message, 409)


@dataclasses.dataclass(frozen=True, slots=True)
class UserRow:
    name: str
    user_id: str
    arn: str
    path: str
    created_at: dt.datetime
    tags: dict[str, str]


@dataclasses.dataclass(frozen=True, slots=True)
class GroupRow:
    name: str
    group_id: str
    arn: str
    path: str
    created_at: dt.datetime


@dataclasses.dataclass(frozen=True, slots=True)
class RoleRow:
    name: str
    role_id: str
    arn: str
    path: str
    assume_role_policy: str
    description: str | None
    created_at: dt.datetime
    tags: dict[str, str]


@dataclasses.dataclass(frozen=True, slots=True)
class PolicyRow:
    arn: str
    name: str
    policy_id: str
    path: str
    description: str | None
    default_version_id: str
    aws_managed: bool
    created_at: dt.datetime
    updated_at: dt.datetime
    attachment_count: int


@dataclasses.dataclass(frozen=True, slots=True)
class PolicyVersionRow:
    version_id: str
    document: str
    created_at: dt.datetime
    is_default: bool


@dataclasses.dataclass(frozen=True, slots=True)
class AccessKeyMetadata:
    access_key_id: str
    user_name: str
    status: str
    created_at: dt.datetime


_HOLDER_TABLES = {"user": iam_users, "group": iam_groups, "role": iam_roles}
_HOLDER_WORD = {"user": "user", "group": "group", "role": "role"}


def _user(row: RowMapping) -> UserRow:
    return UserRow(
        row["name"], row["user_id"], row["arn"], row["path"], row["created_at"], dict(row["tags"] or {})
    )


def _group(row: RowMapping) -> GroupRow:
    return GroupRow(row["name"], row["group_id"], row["arn"], row["path"], row["created_at"])


def _role(row: RowMapping) -> RoleRow:
    return RoleRow(
        row["name"],
        row["role_id"],
        row["arn"],
        row["path"],
        row["assume_role_policy"],
        row["description"],
        row["created_at"],
        dict(row["tags"] or {}),
    )


async def _name_taken(conn: AsyncConnection, holder_type: HolderType, name: str) -> bool:
    table = _HOLDER_TABLES[holder_type]
    query = sa.select(table.c.name).where(sa.func.lower(table.c.name) == name.lower())
    return (await conn.execute(query)).first() is not None


async def _holder_exists(conn: AsyncConnection, holder_type: HolderType, name: str) -> bool:
    table = _HOLDER_TABLES[holder_type]
    return (await conn.execute(sa.select(table.c.name).where(table.c.name == name))).first() is not None


async def _require_holder(conn: AsyncConnection, holder_type: HolderType, name: str) -> None:
    if not await _holder_exists(conn, holder_type, name):
        raise no_such_entity(f"The {_HOLDER_WORD[holder_type]} with name {name} cannot be found.")


async def _insert(conn: AsyncConnection, statement: Any, conflict: str) -> None:
    try:
        await conn.execute(statement)
    except IntegrityError:  # a concurrent create won the race; the transaction rolls back
        raise already_exists(conflict) from None


async def _get_row(engine: AsyncEngine, table: sa.Table, name: str) -> RowMapping | None:
    async with engine.connect() as conn:
        return (await conn.execute(sa.select(table).where(table.c.name == name))).mappings().first()


async def _list_rows(engine: AsyncEngine, table: sa.Table, path_prefix: str) -> list[RowMapping]:
    async with engine.connect() as conn:
        query = (
            sa.select(table)
            .where(table.c.path.startswith(path_prefix, autoescape=True))
            .order_by(table.c.name)
        )
        return list((await conn.execute(query)).mappings())


# -- users ------------------------------------------------------------------------------------------
async def create_user(
    engine: AsyncEngine, account: str, name: str, path: str, tags: Mapping[str, str], now: dt.datetime
) -> UserRow:
    row = UserRow(name, ids.unique_id("AIDA"), user_arn(account, name, path), path, now, dict(tags))
    conflict = f"User with name {name} already exists."
    async with engine.begin() as conn:
        if await _name_taken(conn, "user", name):
            raise already_exists(conflict)
        await _insert(
            conn,
            sa.insert(iam_users).values(
                name=name, user_id=row.user_id, arn=row.arn, path=path, created_at=now, tags=row.tags
            ),
            conflict,
        )
    return row


async def get_user(engine: AsyncEngine, name: str) -> UserRow | None:
    row = await _get_row(engine, iam_users, name)
    return None if row is None else _user(row)


async def list_users(engine: AsyncEngine, path_prefix: str = "/") -> list[UserRow]:
    return [_user(row) for row in await _list_rows(engine, iam_users, path_prefix)]


async def _count(conn: AsyncConnection, query: Any) -> int:
    return int((await conn.execute(sa.select(sa.func.count()).select_from(query.subquery()))).scalar_one())


async def _holder_policy_conflicts(conn: AsyncConnection, holder_type: HolderType, name: str) -> None:
    attached = sa.select(iam_attachments.c.policy_arn).where(
        iam_attachments.c.principal_type == holder_type, iam_attachments.c.principal_name == name
    )
    if await _count(conn, attached):
        raise delete_conflict("Cannot delete entity, must detach all policies first.")
    inline = sa.select(iam_inline_policies.c.policy_name).where(
        iam_inline_policies.c.principal_type == holder_type, iam_inline_policies.c.principal_name == name
    )
    if await _count(conn, inline):
        raise delete_conflict("Cannot delete entity, must delete policies first.")


async def delete_user(engine: AsyncEngine, name: str) -> None:
    """As AWS: refuse while the user still has access keys, policies or group memberships."""
    async with engine.begin() as conn:
        await _require_holder(conn, "user", name)
        keys = sa.select(access_keys.c.access_key_id).where(
            access_keys.c.principal_type == "user", access_keys.c.principal_name == name
        )
        if await _count(conn, keys):
            raise delete_conflict("Cannot delete entity, must delete access keys first.")
        await _holder_policy_conflicts(conn, "user", name)
        groups = sa.select(iam_group_members.c.group_name).where(iam_group_members.c.user_name == name)
        if await _count(conn, groups):
            raise delete_conflict("Cannot delete entity, must remove user from all groups first.")
        await conn.execute(sa.delete(iam_users).where(iam_users.c.name == name))


async def _update_tags(
    engine: AsyncEngine,
    holder_type: Literal["user", "role"],
    name: str,
    add: Mapping[str, str],
    remove: Sequence[str],
) -> None:
    table = _HOLDER_TABLES[holder_type]
    async with engine.begin() as conn:
        current = (await conn.execute(sa.select(table.c.tags).where(table.c.name == name))).first()
        if current is None:
            raise no_such_entity(f"The {holder_type} with name {name} cannot be found.")
        tags = dict(current[0] or {})
        tags.update(add)
        for key in remove:
            tags.pop(key, None)
        if len(tags) > MAX_TAGS:
            raise limit_exceeded(f"Cannot exceed quota for TagsPer{holder_type.capitalize()}: {MAX_TAGS}.")
        await conn.execute(sa.update(table).where(table.c.name == name).values(tags=tags))


async def tag_user(engine: AsyncEngine, name: str, tags: Mapping[str, str]) -> None:
    await _update_tags(engine, "user", name, tags, ())


async def untag_user(engine: AsyncEngine, name: str, keys: Sequence[str]) -> None:
    await _update_tags(engine, "user", name, {}, keys)


# -- groups -----------------------------------------------------------------------------------------
async def create_group(engine: AsyncEngine, account: str, name: str, path: str, now: dt.datetime) -> GroupRow:
    row = GroupRow(name, ids.unique_id("AGPA"), group_arn(account, name, path), path, now)
    conflict = f"Group with name {name} already exists."
    async with engine.begin() as conn:
        if await _name_taken(conn, "group", name):
            raise already_exists(conflict)
        await _insert(
            conn,
            sa.insert(iam_groups).values(
                name=name, group_id=row.group_id, arn=row.arn, path=path, created_at=now
            ),
            conflict,
        )
    return row


async def get_group(engine: AsyncEngine, name: str) -> GroupRow | None:
    row = await _get_row(engine, iam_groups, name)
    return None if row is None else _group(row)


async def list_groups(engine: AsyncEngine, path_prefix: str = "/") -> list[GroupRow]:
    return [_group(row) for row in await _list_rows(engine, iam_groups, path_prefix)]


async def group_members(engine: AsyncEngine, group_name: str) -> list[UserRow]:
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                sa.select(iam_users)
                .join(iam_group_members, iam_group_members.c.user_name == iam_users.c.name)
                .where(iam_group_members.c.group_name == group_name)
                .order_by(iam_users.c.name)
            )
        ).mappings()
        return [_user(row) for row in rows]


async def groups_for_user(engine: AsyncEngine, user_name: str) -> list[GroupRow]:
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                sa.select(iam_groups)
                .join(iam_group_members, iam_group_members.c.group_name == iam_groups.c.name)
                .where(iam_group_members.c.user_name == user_name)
                .order_by(iam_groups.c.name)
            )
        ).mappings()
        return [_group(row) for row in rows]


async def delete_group(engine: AsyncEngine, name: str) -> None:
    async with engine.begin() as conn:
        await _require_holder(conn, "group", name)
        members = sa.select(iam_group_members.c.user_name).where(iam_group_members.c.group_name == name)
        if await _count(conn, members):
            raise delete_conflict("Cannot delete entity, must remove users from group first.")
        await _holder_policy_conflicts(conn, "group", name)
        await conn.execute(sa.delete(iam_groups).where(iam_groups.c.name == name))


async def add_user_to_group(engine: AsyncEngine, group_name: str, user_name: str) -> None:
    async with engine.begin() as conn:
        await _require_holder(conn, "group", group_name)
        await _require_holder(conn, "user", user_name)
        exists = sa.select(iam_group_members.c.user_name).where(
            iam_group_members.c.group_name == group_name, iam_group_members.c.user_name == user_name
        )
        if (await conn.execute(exists)).first() is None:  # adding twice is not an error in AWS
            await conn.execute(
                sa.insert(iam_group_members).values(group_name=group_name, user_name=user_name)
            )


async def remove_user_from_group(engine: AsyncEngine, group_name: str, user_name: str) -> None:
    async with engine.begin() as conn:
        await _require_holder(conn, "group", group_name)
        await _require_holder(conn, "user", user_name)
        result = await conn.execute(
            sa.delete(iam_group_members).where(
                iam_group_members.c.group_name == group_name, iam_group_members.c.user_name == user_name
            )
        )
        if result.rowcount == 0:
            raise no_such_entity(f"User {user_name} is not in group {group_name}.")


# -- roles ------------------------------------------------------------------------------------------
async def create_role(
    engine: AsyncEngine,
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
    conflict = f"Role with name {name} already exists."
    async with engine.begin() as conn:
        if await _name_taken(conn, "role", name):
            raise already_exists(conflict)
        await _insert(
            conn,
            sa.insert(iam_roles).values(
                name=name,
                role_id=row.role_id,
                arn=row.arn,
                path=path,
                assume_role_policy=trust_policy,
                description=description,
                created_at=now,
                tags=row.tags,
            ),
            conflict,
        )
    return row


async def get_role(engine: AsyncEngine, name: str) -> RoleRow | None:
    row = await _get_row(engine, iam_roles, name)
    return None if row is None else _role(row)


async def list_roles(engine: AsyncEngine, path_prefix: str = "/") -> list[RoleRow]:
    return [_role(row) for row in await _list_rows(engine, iam_roles, path_prefix)]


async def delete_role(engine: AsyncEngine, name: str) -> None:
    async with engine.begin() as conn:
        await _require_holder(conn, "role", name)
        await _holder_policy_conflicts(conn, "role", name)
        await conn.execute(sa.delete(iam_roles).where(iam_roles.c.name == name))


# -- managed policies -------------------------------------------------------------------------------
def _attachment_count() -> Any:
    return (
        sa.select(sa.func.count())
        .where(iam_attachments.c.policy_arn == iam_policies.c.arn)
        .correlate(iam_policies)
        .scalar_subquery()
        .label("attachment_count")
    )


def _policy(row: RowMapping) -> PolicyRow:
    return PolicyRow(
        arn=row["arn"],
        name=row["name"],
        policy_id=row["policy_id"],
        path=row["path"],
        description=row["description"],
        default_version_id=row["default_version_id"],
        aws_managed=bool(row["aws_managed"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        attachment_count=int(row["attachment_count"]),
    )


async def create_policy(
    engine: AsyncEngine,
    account: str,
    name: str,
    path: str,
    description: str | None,
    document: str,
    now: dt.datetime,
) -> PolicyRow:
    arn = policy_arn(account, name, path)
    conflict = f"A policy called {name} already exists. Duplicate names are not allowed."
    async with engine.begin() as conn:
        same_name = sa.select(iam_policies.c.arn).where(
            sa.func.lower(iam_policies.c.name) == name.lower(), iam_policies.c.aws_managed.is_(False)
        )
        if (await conn.execute(same_name)).first() is not None:
            raise already_exists(conflict)
        row = PolicyRow(arn, name, ids.unique_id("ANPA"), path, description, "v1", False, now, now, 0)
        await _insert(
            conn,
            sa.insert(iam_policies).values(
                arn=arn,
                name=name,
                policy_id=row.policy_id,
                path=path,
                description=description,
                default_version_id="v1",
                aws_managed=False,
                created_at=now,
                updated_at=now,
            ),
            conflict,
        )
        await conn.execute(
            sa.insert(iam_policy_versions).values(
                policy_arn=arn, version_id="v1", document=document, created_at=now
            )
        )
    return row


async def _get_policy(conn: AsyncConnection, arn: str) -> PolicyRow | None:
    row = (
        (await conn.execute(sa.select(iam_policies, _attachment_count()).where(iam_policies.c.arn == arn)))
        .mappings()
        .first()
    )
    return None if row is None else _policy(row)


async def _require_policy(conn: AsyncConnection, arn: str) -> PolicyRow:
    policy = await _get_policy(conn, arn)
    if policy is None:
        raise no_such_entity(f"Policy {arn} was not found.")
    return policy


def _customer_managed(policy: PolicyRow) -> None:
    if policy.aws_managed:
        raise IamError("InvalidInput", f"{policy.arn} is an AWS managed policy and cannot be changed.", 400)


async def get_policy(engine: AsyncEngine, arn: str) -> PolicyRow | None:
    async with engine.connect() as conn:
        return await _get_policy(conn, arn)


async def list_policies(
    engine: AsyncEngine, *, scope: str = "All", only_attached: bool = False, path_prefix: str = "/"
) -> list[PolicyRow]:
    query = sa.select(iam_policies, _attachment_count()).where(
        iam_policies.c.path.startswith(path_prefix, autoescape=True)
    )
    if scope == "AWS":
        query = query.where(iam_policies.c.aws_managed.is_(True))
    elif scope == "Local":
        query = query.where(iam_policies.c.aws_managed.is_(False))
    async with engine.connect() as conn:
        rows = (await conn.execute(query.order_by(iam_policies.c.name, iam_policies.c.arn))).mappings()
        policies = [_policy(row) for row in rows]
    return [p for p in policies if p.attachment_count > 0] if only_attached else policies


async def delete_policy(engine: AsyncEngine, arn: str) -> None:
    async with engine.begin() as conn:
        policy = await _require_policy(conn, arn)
        _customer_managed(policy)
        if policy.attachment_count:
            raise delete_conflict("Cannot delete a policy attached to entities.")
        versions = sa.select(iam_policy_versions.c.version_id).where(iam_policy_versions.c.policy_arn == arn)
        if await _count(conn, versions) > 1:
            raise delete_conflict(
                "This policy has more than one version. Before you delete a policy, you must delete the "
                "policy's versions. The default version is deleted with the policy."
            )
        await conn.execute(sa.delete(iam_policy_versions).where(iam_policy_versions.c.policy_arn == arn))
        await conn.execute(sa.delete(iam_policies).where(iam_policies.c.arn == arn))


async def list_policy_versions(engine: AsyncEngine, arn: str) -> list[PolicyVersionRow]:
    async with engine.connect() as conn:
        policy = await _require_policy(conn, arn)
        rows = (
            await conn.execute(sa.select(iam_policy_versions).where(iam_policy_versions.c.policy_arn == arn))
        ).mappings()
        versions = [
            PolicyVersionRow(
                r["version_id"], r["document"], r["created_at"], r["version_id"] == policy.default_version_id
            )
            for r in rows
        ]
    return sorted(versions, key=lambda v: -_version_number(v.version_id))


async def get_policy_version(engine: AsyncEngine, arn: str, version_id: str) -> PolicyVersionRow:
    async with engine.connect() as conn:
        policy = await _require_policy(conn, arn)
        row = (
            (
                await conn.execute(
                    sa.select(iam_policy_versions).where(
                        iam_policy_versions.c.policy_arn == arn,
                        iam_policy_versions.c.version_id == version_id,
                    )
                )
            )
            .mappings()
            .first()
        )
    if row is None:
        raise no_such_entity(f"Policy {arn} version {version_id} does not exist or is not attachable.")
    return PolicyVersionRow(
        row["version_id"], row["document"], row["created_at"], version_id == policy.default_version_id
    )


def _version_number(version_id: str) -> int:
    return int(version_id[1:]) if version_id[1:].isdigit() else 0


async def create_policy_version(
    engine: AsyncEngine, arn: str, document: str, set_as_default: bool, now: dt.datetime
) -> PolicyVersionRow:
    async with engine.begin() as conn:
        policy = await _require_policy(conn, arn)
        _customer_managed(policy)
        existing = (
            (
                await conn.execute(
                    sa.select(iam_policy_versions.c.version_id).where(iam_policy_versions.c.policy_arn == arn)
                )
            )
            .scalars()
            .all()
        )
        if len(existing) >= MAX_POLICY_VERSIONS:
            raise limit_exceeded(
                f"A managed policy can have up to {MAX_POLICY_VERSIONS} versions. Before you create a new "
                "version, you must delete an existing version."
            )
        version_id = f"v{max(_version_number(v) for v in existing) + 1}"
        await conn.execute(
            sa.insert(iam_policy_versions).values(
                policy_arn=arn, version_id=version_id, document=document, created_at=now
            )
        )
        values: dict[str, Any] = {"updated_at": now}
        if set_as_default:
            values["default_version_id"] = version_id
        await conn.execute(sa.update(iam_policies).where(iam_policies.c.arn == arn).values(**values))
    return PolicyVersionRow(version_id, document, now, set_as_default)


async def delete_policy_version(engine: AsyncEngine, arn: str, version_id: str) -> None:
    async with engine.begin() as conn:
        policy = await _require_policy(conn, arn)
        _customer_managed(policy)
        if version_id == policy.default_version_id:
            raise delete_conflict("Cannot delete the default version of a policy.")
        result = await conn.execute(
            sa.delete(iam_policy_versions).where(
                iam_policy_versions.c.policy_arn == arn, iam_policy_versions.c.version_id == version_id
            )
        )
        if result.rowcount == 0:
            raise no_such_entity(f"Policy {arn} version {version_id} does not exist.")


async def set_default_policy_version(
    engine: AsyncEngine, arn: str, version_id: str, now: dt.datetime
) -> None:
    async with engine.begin() as conn:
        policy = await _require_policy(conn, arn)
        _customer_managed(policy)
        exists = sa.select(iam_policy_versions.c.version_id).where(
            iam_policy_versions.c.policy_arn == arn, iam_policy_versions.c.version_id == version_id
        )
        if (await conn.execute(exists)).first() is None:
            raise no_such_entity(f"Policy {arn} version {version_id} does not exist.")
        await conn.execute(
            sa.update(iam_policies)
            .where(iam_policies.c.arn == arn)
            .values(default_version_id=version_id, updated_at=now)
        )


# -- attachments ------------------------------------------------------------------------------------
async def attach_policy(engine: AsyncEngine, holder_type: HolderType, holder_name: str, arn: str) -> None:
    async with engine.begin() as conn:
        await _require_holder(conn, holder_type, holder_name)
        if await _get_policy(conn, arn) is None:
            raise no_such_entity(f"Policy {arn} does not exist or is not attachable.")
        attached = sa.select(iam_attachments.c.policy_arn).where(
            iam_attachments.c.principal_type == holder_type, iam_attachments.c.principal_name == holder_name
        )
        current = set((await conn.execute(attached)).scalars().all())
        if arn in current:
            return  # attaching twice is not an error in AWS
        if len(current) >= MAX_ATTACHED_POLICIES:
            raise limit_exceeded(
                f"Cannot exceed quota for PoliciesPer{holder_type.capitalize()}: {MAX_ATTACHED_POLICIES}."
            )
        await conn.execute(
            sa.insert(iam_attachments).values(
                principal_type=holder_type, principal_name=holder_name, policy_arn=arn
            )
        )


async def detach_policy(engine: AsyncEngine, holder_type: HolderType, holder_name: str, arn: str) -> None:
    async with engine.begin() as conn:
        await _require_holder(conn, holder_type, holder_name)
        result = await conn.execute(
            sa.delete(iam_attachments).where(
                iam_attachments.c.principal_type == holder_type,
                iam_attachments.c.principal_name == holder_name,
                iam_attachments.c.policy_arn == arn,
            )
        )
        if result.rowcount == 0:
            raise no_such_entity(f"Policy {arn} was not found.")


async def attached_policies(
    engine: AsyncEngine, holder_type: HolderType, holder_name: str
) -> list[tuple[str, str]]:
    """``(policy name, policy ARN)`` pairs; NoSuchEntity if the holder does not exist."""
    async with engine.connect() as conn:
        await _require_holder(conn, holder_type, holder_name)
        rows = await conn.execute(
            sa.select(iam_policies.c.name, iam_policies.c.arn)
            .join(iam_attachments, iam_attachments.c.policy_arn == iam_policies.c.arn)
            .where(
                iam_attachments.c.principal_type == holder_type,
                iam_attachments.c.principal_name == holder_name,
            )
            .order_by(iam_policies.c.name)
        )
        return [(name, arn) for name, arn in rows.all()]


# -- inline policies --------------------------------------------------------------------------------
def _inline_where(holder_type: HolderType, holder_name: str) -> Any:
    return sa.and_(
        iam_inline_policies.c.principal_type == holder_type,
        iam_inline_policies.c.principal_name == holder_name,
    )


async def put_inline_policy(
    engine: AsyncEngine, holder_type: HolderType, holder_name: str, policy_name: str, document: str
) -> None:
    async with engine.begin() as conn:
        await _require_holder(conn, holder_type, holder_name)
        where = sa.and_(
            _inline_where(holder_type, holder_name), iam_inline_policies.c.policy_name == policy_name
        )
        result = await conn.execute(sa.update(iam_inline_policies).where(where).values(document=document))
        if result.rowcount == 0:
            await conn.execute(
                sa.insert(iam_inline_policies).values(
                    principal_type=holder_type,
                    principal_name=holder_name,
                    policy_name=policy_name,
                    document=document,
                )
            )


async def get_inline_policy(
    engine: AsyncEngine, holder_type: HolderType, holder_name: str, policy_name: str
) -> str:
    async with engine.connect() as conn:
        await _require_holder(conn, holder_type, holder_name)
        where = sa.and_(
            _inline_where(holder_type, holder_name), iam_inline_policies.c.policy_name == policy_name
        )
        document = (await conn.execute(sa.select(iam_inline_policies.c.document).where(where))).scalar()
    if document is None:
        raise no_such_entity(f"The {holder_type} policy with name {policy_name} cannot be found.")
    return str(document)


async def delete_inline_policy(
    engine: AsyncEngine, holder_type: HolderType, holder_name: str, policy_name: str
) -> None:
    async with engine.begin() as conn:
        await _require_holder(conn, holder_type, holder_name)
        where = sa.and_(
            _inline_where(holder_type, holder_name), iam_inline_policies.c.policy_name == policy_name
        )
        if (await conn.execute(sa.delete(iam_inline_policies).where(where))).rowcount == 0:
            raise no_such_entity(f"The {holder_type} policy with name {policy_name} cannot be found.")


async def inline_policy_names(engine: AsyncEngine, holder_type: HolderType, holder_name: str) -> list[str]:
    async with engine.connect() as conn:
        await _require_holder(conn, holder_type, holder_name)
        rows = await conn.execute(
            sa.select(iam_inline_policies.c.policy_name)
            .where(_inline_where(holder_type, holder_name))
            .order_by(iam_inline_policies.c.policy_name)
        )
        return list(rows.scalars().all())


async def holders_with_groups(
    conn: AsyncConnection, holder_type: str, holder_name: str
) -> list[tuple[str, str]]:
    """The holder, then (for a user) each of its groups by name: whose policies apply to it."""
    holders: list[tuple[str, str]] = [(holder_type, holder_name)]
    if holder_type == "user":
        groups = await conn.execute(
            sa.select(iam_group_members.c.group_name)
            .where(iam_group_members.c.user_name == holder_name)
            .order_by(iam_group_members.c.group_name)
        )
        holders += [("group", group) for group in groups.scalars().all()]
    return holders


async def documents_of_holders(
    conn: AsyncConnection, holders: Sequence[tuple[str, str]]
) -> list[tuple[str, str]]:
    """``(label, document)`` of each holder's inline policies (by name), then its attached managed
    policies' default versions (by ARN). Labels: inline ``<type>/<name>/inline/<policy>``, managed:
    the policy ARN (as the authoriser reports them)."""
    documents: list[tuple[str, str]] = []
    for kind, name in holders:
        inline = await conn.execute(
            sa.select(iam_inline_policies.c.policy_name, iam_inline_policies.c.document)
            .where(iam_inline_policies.c.principal_type == kind, iam_inline_policies.c.principal_name == name)
            .order_by(iam_inline_policies.c.policy_name)
        )
        documents += [(f"{kind}/{name}/inline/{policy}", doc) for policy, doc in inline.all()]
        managed = await conn.execute(
            sa.select(iam_policies.c.arn, iam_policy_versions.c.document)
            .select_from(
                iam_attachments.join(iam_policies, iam_policies.c.arn == iam_attachments.c.policy_arn).join(
                    iam_policy_versions,
                    sa.and_(
                        iam_policy_versions.c.policy_arn == iam_policies.c.arn,
                        iam_policy_versions.c.version_id == iam_policies.c.default_version_id,
                    ),
                )
            )
            .where(iam_attachments.c.principal_type == kind, iam_attachments.c.principal_name == name)
            .order_by(iam_policies.c.arn)
        )
        documents += [(arn, doc) for arn, doc in managed.all()]
    return documents


async def policy_documents(
    engine: AsyncEngine, holder_type: HolderType, holder_name: str
) -> list[tuple[str, str]]:
    """``(label, document)`` of every policy that applies to the holder (a user's includes its groups').
    NoSuchEntity if the holder does not exist."""
    async with engine.connect() as conn:
        await _require_holder(conn, holder_type, holder_name)
        return await documents_of_holders(conn, await holders_with_groups(conn, holder_type, holder_name))


# -- access keys of users ---------------------------------------------------------------------------
async def user_access_keys(engine: AsyncEngine, user_name: str) -> list[AccessKeyMetadata]:
    async with engine.connect() as conn:
        await _require_holder(conn, "user", user_name)
        rows = (
            await conn.execute(
                sa.select(access_keys.c.access_key_id, access_keys.c.status, access_keys.c.created_at)
                .where(
                    access_keys.c.principal_type == "user",
                    access_keys.c.principal_name == user_name,
                    access_keys.c.session_token_hash.is_(None),
                )
                .order_by(access_keys.c.created_at)
            )
        ).all()
    return [AccessKeyMetadata(key_id, user_name, status, created) for key_id, status, created in rows]


async def check_access_key_quota(engine: AsyncEngine, user_name: str) -> None:
    if len(await user_access_keys(engine, user_name)) >= MAX_ACCESS_KEYS_PER_USER:
        raise limit_exceeded(f"Cannot exceed quota for AccessKeysPerUser: {MAX_ACCESS_KEYS_PER_USER}")


def _user_key(user_name: str, key_id: str) -> Any:
    return sa.and_(
        access_keys.c.access_key_id == key_id,
        access_keys.c.principal_type == "user",
        access_keys.c.principal_name == user_name,
        access_keys.c.session_token_hash.is_(None),
    )


async def update_access_key(engine: AsyncEngine, user_name: str, key_id: str, status: str) -> None:
    async with engine.begin() as conn:
        await _require_holder(conn, "user", user_name)
        result = await conn.execute(
            sa.update(access_keys).where(_user_key(user_name, key_id)).values(status=status)
        )
        if result.rowcount == 0:
            raise no_such_entity(f"The Access Key with id {key_id} cannot be found.")


async def delete_access_key(engine: AsyncEngine, user_name: str, key_id: str) -> None:
    async with engine.begin() as conn:
        await _require_holder(conn, "user", user_name)
        result = await conn.execute(sa.delete(access_keys).where(_user_key(user_name, key_id)))
        if result.rowcount == 0:
            raise no_such_entity(f"The Access Key with id {key_id} cannot be found.")
