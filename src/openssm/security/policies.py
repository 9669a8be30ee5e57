"""Loading a principal's identity-based policies from the ``iam_*`` tables."""

from __future__ import annotations

import logging

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from openssm.iam import MalformedPolicyDocument, PolicySource, parse_policy
from openssm.iam.principal import Principal
from openssm.store.tables import (
    iam_attachments,
    iam_group_members,
    iam_inline_policies,
    iam_policies,
    iam_policy_versions,
)

log = logging.getLogger(__name__)


def _parse(label: str, document: str) -> PolicySource | None:
    try:
        return PolicySource(label=label, policy=parse_policy(document))
    except MalformedPolicyDocument as exc:
        # Stored policies were validated on the way in; one that no longer parses grants nothing.
        log.error("stored policy %s does not parse (%s); ignoring it", label, exc)
        return None


async def _holder_policies(conn: AsyncConnection, holder_type: str, holder_name: str) -> list[PolicySource]:
    sources: list[PolicySource] = []
    inline = await conn.execute(
        sa.select(iam_inline_policies.c.policy_name, iam_inline_policies.c.document)
        .where(
            iam_inline_policies.c.principal_type == holder_type,
            iam_inline_policies.c.principal_name == holder_name,
        )
        .order_by(iam_inline_policies.c.policy_name)
    )
    for policy_name, document in inline.all():
        source = _parse(f"{holder_type}/{holder_name}/inline/{policy_name}", document)
        if source is not None:
            sources.append(source)
    attached = await conn.execute(
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
        .where(
            iam_attachments.c.principal_type == holder_type,
            iam_attachments.c.principal_name == holder_name,
        )
        .order_by(iam_policies.c.arn)
    )
    for arn, document in attached.all():
        source = _parse(arn, document)
        if source is not None:
            sources.append(source)
    return sources


async def policies_for(engine: AsyncEngine, principal: Principal) -> list[PolicySource]:
    """User: own inline + attached, and those of each group. Assumed role: the role's inline + attached."""
    async with engine.connect() as conn:
        if principal.type == "AssumedRole" and principal.role_name:
            return await _holder_policies(conn, "role", principal.role_name)
        if principal.type != "User" or not principal.username:
            return []
        sources = await _holder_policies(conn, "user", principal.username)
        groups = await conn.execute(
            sa.select(iam_group_members.c.group_name)
            .where(iam_group_members.c.user_name == principal.username)
            .order_by(iam_group_members.c.group_name)
        )
        for (group_name,) in groups.all():
            sources.extend(await _holder_policies(conn, "group", group_name))
        return sources
