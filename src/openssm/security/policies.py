"""Loading a principal's identity-based policies from the ``iam_*`` tables."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from typing import Final

from sqlalchemy.ext.asyncio import AsyncEngine

from openssm.iam import MalformedPolicyDocument, PolicySource, parse_policy
from openssm.iam.principal import Principal
from openssm.services import Services
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


def _holder(principal: Principal) -> tuple[HolderType, str] | None:
    """Whose policies apply to the principal: an assumed role's, or a user's (with its groups')."""
    if principal.type == "AssumedRole" and principal.role_name:
        return ("role", principal.role_name)
    if principal.type == "User" and principal.username:
        return ("user", principal.username)
    return None


async def _load(engine: AsyncEngine, holder: tuple[HolderType, str]) -> list[PolicySource]:
    async with engine.connect() as conn:
        holders = [holder] if holder[0] == "role" else await holder_policies.with_groups(conn, *holder)
        documents = await holder_policies.documents_of(conn, holders)
    return [parse_stored(label, document) for label, document in documents]


async def policies_for(engine: AsyncEngine, principal: Principal) -> list[PolicySource]:
    """User: own inline + attached, and those of each group. Assumed role: the role's inline + attached."""
    holder = _holder(principal)
    return [] if holder is None else await _load(engine, holder)


async def cached_policies_for(services: Services, principal: Principal) -> Sequence[PolicySource]:
    """:func:`policies_for`, parsed once and kept while the authorisation generation holds (every
    change to a policy, an attachment, a group's members bumps it: ``openssm.store.authz_generation``)."""
    holder = _holder(principal)
    if holder is None:
        return ()
    caches = services.authz
    generation = await services.authz_generation()
    policies = caches.policies.get(holder, generation)
    if policies is None:
        policies = tuple(await _load(services.engine, holder))
        caches.policies.put(holder, generation, policies)
    return policies
