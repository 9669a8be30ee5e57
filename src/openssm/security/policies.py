"""Loading a principal's identity-based policies from the ``iam_*`` tables."""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncEngine

from openssm.iam import MalformedPolicyDocument, PolicySource, parse_policy
from openssm.iam.principal import Principal
from openssm.store.iam import holder_policies
from openssm.store.iam.holders import HolderType

log = logging.getLogger(__name__)


def _parse(label: str, document: str) -> PolicySource | None:
    try:
        return PolicySource(label=label, policy=parse_policy(document))
    except MalformedPolicyDocument as exc:
        # Stored policies were validated on the way in; one that no longer parses grants nothing.
        log.error("stored policy %s does not parse (%s); ignoring it", label, exc)
        return None


async def policies_for(engine: AsyncEngine, principal: Principal) -> list[PolicySource]:
    """User: own inline + attached, and those of each group. Assumed role: the role's inline + attached."""
    async with engine.connect() as conn:
        holders: list[tuple[HolderType, str]]
        if principal.type == "AssumedRole" and principal.role_name:
            holders = [("role", principal.role_name)]
        elif principal.type == "User" and principal.username:
            holders = await holder_policies.with_groups(conn, "user", principal.username)
        else:
            return []
        documents = await holder_policies.documents_of(conn, holders)
    return [source for label, document in documents if (source := _parse(label, document)) is not None]
