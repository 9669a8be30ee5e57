"""Loading a principal's identity-based policies from the ``iam_*`` tables."""

from __future__ import annotations

import hashlib
import logging
from typing import Final

from sqlalchemy.ext.asyncio import AsyncEngine

from openssm.iam import MalformedPolicyDocument, PolicySource, parse_policy
from openssm.iam.principal import Principal
from openssm.store.iam import holder_policies
from openssm.store.iam.holders import HolderType

log = logging.getLogger(__name__)

# What an unparseable stored policy becomes: it may have held a Deny, so ignoring it could grant what
# it forbade. Evaluation fails closed instead: every action of the principal is explicitly denied,
# and the audit log's matched statement names the broken policy.
DENY_EVERYTHING: Final = parse_policy(
    '{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"*","Resource":"*"}]}'
)
_REPORTED_LIMIT: Final = 1024
_reported: set[tuple[str, str]] = set()


def parse_stored(label: str, document: str) -> PolicySource:
    """A stored policy as the authoriser evaluates it (one that no longer parses: deny everything)."""
    try:
        return PolicySource(label=label, policy=parse_policy(document))
    except MalformedPolicyDocument as exc:
        # Stored policies are validated on the way in; one that no longer parses was changed in the
        # store, or by a newer, stricter parser. Said once per policy text, not on every request.
        key = (label, hashlib.sha256(document.encode("utf-8", "surrogatepass")).hexdigest())
        if key not in _reported:
            if len(_reported) >= _REPORTED_LIMIT:
                _reported.clear()
            _reported.add(key)
            log.error(
                "stored policy %s does not parse (%s): denying every request of its holders", label, exc
            )
        return PolicySource(label=f"{label} (unparseable: fails closed)", policy=DENY_EVERYTHING)


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
    return [parse_stored(label, document) for label, document in documents]
