"""Managed policies (``iam_policies``) and their versions (``iam_policy_versions``): the account's
own, and the AWS managed ones this server provides (read-only to the account)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any, Final, Literal

import sqlalchemy as sa

from openssm.iam.arn import policy_arn
from openssm.store import ids
from openssm.store.errors import (
    DeleteConflict,
    EntityAlreadyExists,
    LimitExceeded,
    NoSuchEntity,
    NotModifiable,
)
from openssm.store.iam import holders
from openssm.store.rows import Db, count, every, execute, first, reading, scalars, writing
from openssm.store.tables import iam_attachments, iam_policies, iam_policy_versions

MAX_POLICY_VERSIONS: Final = 5
Scope = Literal["All", "AWS", "Local"]


@dataclasses.dataclass(frozen=True, slots=True)
class PolicyRow:
    arn: str
    name: str
    policy_id: str  # ANPA…
    path: str
    description: str | None
    default_version_id: str
    aws_managed: bool
    created_at: dt.datetime
    updated_at: dt.datetime
    attachment_count: int  # users, groups and roles it is attached to


@dataclasses.dataclass(frozen=True, slots=True)
class PolicyVersionRow:
    version_id: str
    document: str
    created_at: dt.datetime
    is_default: bool


def _with_attachment_count() -> sa.Select[Any]:
    attached = (
        sa.select(sa.func.count())
        .where(iam_attachments.c.policy_arn == iam_policies.c.arn)
        .correlate(iam_policies)
        .scalar_subquery()
        .label("attachment_count")
    )
    return sa.select(iam_policies, attached)


def _insert(
    arn: str, name: str, path: str, description: str | None, now: dt.datetime, *, aws: bool
) -> sa.Insert:
    return sa.insert(iam_policies).values(
        arn=arn,
        name=name,
        policy_id=ids.unique_id("ANPA"),
        path=path,
        description=description,
        default_version_id="v1",
        aws_managed=aws,
        created_at=now,
        updated_at=now,
    )


def _insert_version(arn: str, version_id: str, document: str, now: dt.datetime) -> sa.Insert:
    return sa.insert(iam_policy_versions).values(
        policy_arn=arn, version_id=version_id, document=document, created_at=now
    )


async def create(
    db: Db, account: str, name: str, path: str, description: str | None, document: str, now: dt.datetime
) -> PolicyRow:
    """A customer managed policy, with ``document`` as its default version v1."""
    arn = policy_arn(account, name, path)
    conflict = f"A policy called {name} already exists. Duplicate names are not allowed."
    async with writing(db) as conn:
        same_name = sa.select(iam_policies.c.arn).where(
            sa.func.lower(iam_policies.c.name) == name.lower(), iam_policies.c.aws_managed.is_(False)
        )
        if await count(conn, same_name):
            raise EntityAlreadyExists(conflict)
        await holders.insert_or_conflict(
            conn, _insert(arn, name, path, description, now, aws=False), conflict
        )
        await conn.execute(_insert_version(arn, "v1", document, now))
        created = await get(conn, arn)
    assert created is not None
    return created


async def ensure_aws_managed(
    db: Db, arn: str, name: str, description: str, document: str, now: dt.datetime
) -> None:
    """An AWS managed policy this server provides, created once (it never changes afterwards)."""
    async with writing(db) as conn:
        if await get(conn, arn) is None:
            await conn.execute(_insert(arn, name, "/", description, now, aws=True))
            await conn.execute(_insert_version(arn, "v1", document, now))


async def get(db: Db, arn: str) -> PolicyRow | None:
    return await first(db, _with_attachment_count().where(iam_policies.c.arn == arn), PolicyRow)


async def require(db: Db, arn: str) -> PolicyRow:
    policy = await get(db, arn)
    if policy is None:
        raise NoSuchEntity(f"Policy {arn} was not found.")
    return policy


async def _require_customer_managed(db: Db, arn: str) -> PolicyRow:
    policy = await require(db, arn)
    if policy.aws_managed:
        raise NotModifiable(f"{policy.arn} is an AWS managed policy and cannot be changed.")
    return policy


async def list_policies(
    db: Db, *, scope: Scope = "All", only_attached: bool = False, path_prefix: str = "/"
) -> list[PolicyRow]:
    query = _with_attachment_count().where(iam_policies.c.path.startswith(path_prefix, autoescape=True))
    if scope != "All":
        query = query.where(iam_policies.c.aws_managed.is_(scope == "AWS"))
    policies = await every(db, query.order_by(iam_policies.c.name, iam_policies.c.arn), PolicyRow)
    return [p for p in policies if p.attachment_count > 0] if only_attached else policies


def _versions(arn: str) -> sa.Select[Any]:
    return sa.select(iam_policy_versions).where(iam_policy_versions.c.policy_arn == arn)


def _version(arn: str, version_id: str) -> sa.Select[Any]:
    return _versions(arn).where(iam_policy_versions.c.version_id == version_id)


async def delete(db: Db, arn: str) -> None:
    async with writing(db) as conn:
        policy = await _require_customer_managed(conn, arn)
        if policy.attachment_count:
            raise DeleteConflict("Cannot delete a policy attached to entities.")
        if await count(conn, _versions(arn)) > 1:
            raise DeleteConflict(
                "This policy has more than one version. Before you delete a policy, you must delete the "
                "policy's versions. The default version is deleted with the policy."
            )
        await conn.execute(sa.delete(iam_policy_versions).where(iam_policy_versions.c.policy_arn == arn))
        await conn.execute(sa.delete(iam_policies).where(iam_policies.c.arn == arn))


def _version_number(version_id: str) -> int:
    return int(version_id[1:]) if version_id[1:].isdigit() else 0


def _version_row(row: Any, policy: PolicyRow) -> PolicyVersionRow:
    version_id = row["version_id"]
    return PolicyVersionRow(
        version_id, row["document"], row["created_at"], version_id == policy.default_version_id
    )


async def list_versions(db: Db, arn: str) -> list[PolicyVersionRow]:
    """Newest first."""
    async with reading(db) as conn:
        policy = await require(conn, arn)
        versions = [_version_row(row, policy) for row in (await conn.execute(_versions(arn))).mappings()]
    return sorted(versions, key=lambda v: -_version_number(v.version_id))


async def get_version(db: Db, arn: str, version_id: str) -> PolicyVersionRow:
    async with reading(db) as conn:
        policy = await require(conn, arn)
        row = (await conn.execute(_version(arn, version_id))).mappings().first()
    if row is None:
        raise NoSuchEntity(f"Policy {arn} version {version_id} does not exist or is not attachable.")
    return _version_row(row, policy)


async def create_version(
    db: Db, arn: str, document: str, set_as_default: bool, now: dt.datetime
) -> PolicyVersionRow:
    async with writing(db) as conn:
        await _require_customer_managed(conn, arn)
        existing = await scalars(
            conn, sa.select(iam_policy_versions.c.version_id).where(iam_policy_versions.c.policy_arn == arn)
        )
        if len(existing) >= MAX_POLICY_VERSIONS:
            raise LimitExceeded(
                f"A managed policy can have up to {MAX_POLICY_VERSIONS} versions. Before you create a new "
                "version, you must delete an existing version."
            )
        version_id = f"v{max(_version_number(v) for v in existing) + 1}"
        await conn.execute(_insert_version(arn, version_id, document, now))
        values: dict[str, Any] = {"updated_at": now}
        if set_as_default:
            values["default_version_id"] = version_id
        await conn.execute(sa.update(iam_policies).where(iam_policies.c.arn == arn).values(**values))
    return PolicyVersionRow(version_id, document, now, set_as_default)


def _no_version(arn: str, version_id: str) -> NoSuchEntity:
    return NoSuchEntity(f"Policy {arn} version {version_id} does not exist.")


async def delete_version(db: Db, arn: str, version_id: str) -> None:
    async with writing(db) as conn:
        policy = await _require_customer_managed(conn, arn)
        if version_id == policy.default_version_id:
            raise DeleteConflict("Cannot delete the default version of a policy.")
        deleted = sa.delete(iam_policy_versions).where(
            iam_policy_versions.c.policy_arn == arn, iam_policy_versions.c.version_id == version_id
        )
        if not await execute(conn, deleted):
            raise _no_version(arn, version_id)


async def set_default_version(db: Db, arn: str, version_id: str, now: dt.datetime) -> None:
    async with writing(db) as conn:
        await _require_customer_managed(conn, arn)
        if not await count(conn, _version(arn, version_id)):
            raise _no_version(arn, version_id)
        await conn.execute(
            sa.update(iam_policies)
            .where(iam_policies.c.arn == arn)
            .values(default_version_id=version_id, updated_at=now)
        )
