"""The policies a user, group or role holds: managed policies attached to it (``iam_attachments``)
and its inline policies (``iam_inline_policies``), and the documents that apply to a principal (a
user's include its groups')."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import sqlalchemy as sa

from openssm.store.errors import DeleteConflict, LimitExceeded, NoSuchEntity
from openssm.store.iam import holders, policies
from openssm.store.iam.holders import HolderType
from openssm.store.rows import Db, count, execute, reading, scalars, writing
from openssm.store.tables import (
    iam_attachments,
    iam_group_members,
    iam_inline_policies,
    iam_policies,
    iam_policy_versions,
)

MAX_ATTACHED_POLICIES: Final = 10


def _attached_to(holder_type: str, holder_name: str) -> sa.ColumnElement[bool]:
    return sa.and_(
        iam_attachments.c.principal_type == holder_type, iam_attachments.c.principal_name == holder_name
    )


def _inline_of(holder_type: str, holder_name: str) -> sa.ColumnElement[bool]:
    return sa.and_(
        iam_inline_policies.c.principal_type == holder_type,
        iam_inline_policies.c.principal_name == holder_name,
    )


async def refuse_while_any(db: Db, holder_type: HolderType, name: str) -> None:
    """DeleteConflict while the holder has attached or inline policies (it cannot be deleted yet)."""
    if await count(db, sa.select(iam_attachments).where(_attached_to(holder_type, name))):
        raise DeleteConflict("Cannot delete entity, must detach all policies first.")
    if await count(db, sa.select(iam_inline_policies).where(_inline_of(holder_type, name))):
        raise DeleteConflict("Cannot delete entity, must delete policies first.")


# -- attached managed policies ----------------------------------------------------------------------
async def attach(db: Db, holder_type: HolderType, holder_name: str, arn: str) -> None:
    """Attaching twice is not an error (as in AWS)."""
    async with writing(db) as conn:
        await holders.require(conn, holder_type, holder_name)
        if await policies.get(conn, arn) is None:
            raise NoSuchEntity(f"Policy {arn} does not exist or is not attachable.")
        current = set(
            await scalars(
                conn, sa.select(iam_attachments.c.policy_arn).where(_attached_to(holder_type, holder_name))
            )
        )
        if arn in current:
            return
        if len(current) >= MAX_ATTACHED_POLICIES:
            raise LimitExceeded(
                f"Cannot exceed quota for PoliciesPer{holder_type.capitalize()}: {MAX_ATTACHED_POLICIES}."
            )
        await conn.execute(
            sa.insert(iam_attachments).values(
                principal_type=holder_type, principal_name=holder_name, policy_arn=arn
            )
        )


async def attach_once(db: Db, holder_type: HolderType, holder_name: str, arn: str) -> None:
    """Attach without checks or limits (the server's own set-up of its roles)."""
    async with writing(db) as conn:
        attached = sa.select(iam_attachments).where(
            _attached_to(holder_type, holder_name), iam_attachments.c.policy_arn == arn
        )
        if not await count(conn, attached):
            await conn.execute(
                sa.insert(iam_attachments).values(
                    principal_type=holder_type, principal_name=holder_name, policy_arn=arn
                )
            )


async def detach(db: Db, holder_type: HolderType, holder_name: str, arn: str) -> None:
    async with writing(db) as conn:
        await holders.require(conn, holder_type, holder_name)
        detached = sa.delete(iam_attachments).where(
            _attached_to(holder_type, holder_name), iam_attachments.c.policy_arn == arn
        )
        if not await execute(conn, detached):
            raise NoSuchEntity(f"Policy {arn} was not found.")


async def attached(db: Db, holder_type: HolderType, holder_name: str) -> list[tuple[str, str]]:
    """``(policy name, policy ARN)`` pairs, by name; NoSuchEntity if the holder does not exist."""
    async with reading(db) as conn:
        await holders.require(conn, holder_type, holder_name)
        rows = await conn.execute(
            sa.select(iam_policies.c.name, iam_policies.c.arn)
            .join(iam_attachments, iam_attachments.c.policy_arn == iam_policies.c.arn)
            .where(_attached_to(holder_type, holder_name))
            .order_by(iam_policies.c.name)
        )
        return [(name, arn) for name, arn in rows.all()]


# -- inline policies --------------------------------------------------------------------------------
def _inline(holder_type: HolderType, holder_name: str, policy_name: str) -> sa.ColumnElement[bool]:
    return sa.and_(_inline_of(holder_type, holder_name), iam_inline_policies.c.policy_name == policy_name)


def _no_inline(holder_type: HolderType, policy_name: str) -> NoSuchEntity:
    return NoSuchEntity(f"The {holder_type} policy with name {policy_name} cannot be found.")


async def put_inline(
    db: Db,
    holder_type: HolderType,
    holder_name: str,
    policy_name: str,
    document: str,
    *,
    replace: bool = True,
) -> None:
    """Create the inline policy, or replace its document (unless ``replace`` is false: then one
    that exists is left as it is)."""
    async with writing(db) as conn:
        await holders.require(conn, holder_type, holder_name)
        where = _inline(holder_type, holder_name, policy_name)
        if replace:
            changed = await execute(
                conn, sa.update(iam_inline_policies).where(where).values(document=document)
            )
        else:
            changed = await count(conn, sa.select(iam_inline_policies).where(where))
        if not changed:
            await conn.execute(
                sa.insert(iam_inline_policies).values(
                    principal_type=holder_type,
                    principal_name=holder_name,
                    policy_name=policy_name,
                    document=document,
                )
            )


async def get_inline(db: Db, holder_type: HolderType, holder_name: str, policy_name: str) -> str:
    async with reading(db) as conn:
        await holders.require(conn, holder_type, holder_name)
        query = sa.select(iam_inline_policies.c.document).where(
            _inline(holder_type, holder_name, policy_name)
        )
        document = (await conn.execute(query)).scalar()
    if document is None:
        raise _no_inline(holder_type, policy_name)
    return str(document)


async def delete_inline(db: Db, holder_type: HolderType, holder_name: str, policy_name: str) -> None:
    async with writing(db) as conn:
        await holders.require(conn, holder_type, holder_name)
        deleted = sa.delete(iam_inline_policies).where(_inline(holder_type, holder_name, policy_name))
        if not await execute(conn, deleted):
            raise _no_inline(holder_type, policy_name)


async def inline_names(db: Db, holder_type: HolderType, holder_name: str) -> list[str]:
    async with reading(db) as conn:
        await holders.require(conn, holder_type, holder_name)
        query = (
            sa.select(iam_inline_policies.c.policy_name)
            .where(_inline_of(holder_type, holder_name))
            .order_by(iam_inline_policies.c.policy_name)
        )
        return [str(name) for name in await scalars(conn, query)]


# -- what applies to a principal --------------------------------------------------------------------
async def with_groups(db: Db, holder_type: HolderType, holder_name: str) -> list[tuple[HolderType, str]]:
    """The holder, then (for a user) each of its groups by name: whose policies apply to it."""
    holders_: list[tuple[HolderType, str]] = [(holder_type, holder_name)]
    if holder_type == "user":
        query = (
            sa.select(iam_group_members.c.group_name)
            .where(iam_group_members.c.user_name == holder_name)
            .order_by(iam_group_members.c.group_name)
        )
        holders_ += [("group", str(group)) for group in await scalars(db, query)]
    return holders_


async def documents_of(db: Db, holders_: Sequence[tuple[HolderType, str]]) -> list[tuple[str, str]]:
    """``(label, document)`` of each holder's inline policies (by name), then its attached managed
    policies' default versions (by ARN). Labels: inline ``<type>/<name>/inline/<policy>``, managed:
    the policy ARN (as the authoriser reports them)."""
    documents: list[tuple[str, str]] = []
    async with reading(db) as conn:
        for kind, name in holders_:
            inline = await conn.execute(
                sa.select(iam_inline_policies.c.policy_name, iam_inline_policies.c.document)
                .where(_inline_of(kind, name))
                .order_by(iam_inline_policies.c.policy_name)
            )
            documents += [(f"{kind}/{name}/inline/{policy}", doc) for policy, doc in inline.all()]
            managed = await conn.execute(
                _default_versions().where(_attached_to(kind, name)).order_by(iam_policies.c.arn)
            )
            documents += [(arn, doc) for arn, doc in managed.all()]
    return documents


def _default_versions() -> sa.Select[Any]:
    return sa.select(iam_policies.c.arn, iam_policy_versions.c.document).select_from(
        iam_attachments.join(iam_policies, iam_policies.c.arn == iam_attachments.c.policy_arn).join(
            iam_policy_versions,
            sa.and_(
                iam_policy_versions.c.policy_arn == iam_policies.c.arn,
                iam_policy_versions.c.version_id == iam_policies.c.default_version_id,
            ),
        )
    )


async def applying_to(db: Db, holder_type: HolderType, holder_name: str) -> list[tuple[str, str]]:
    """``(label, document)`` of every policy that applies to the holder (a user's include its
    groups'). NoSuchEntity if the holder does not exist."""
    async with reading(db) as conn:
        await holders.require(conn, holder_type, holder_name)
        return await documents_of(conn, await with_groups(conn, holder_type, holder_name))
