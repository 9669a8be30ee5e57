"""Role trust policies for web identity federation: may a token's holder assume the role?

A statement applies to AssumeRoleWithWebIdentity when its ``Principal`` names the IAM OIDC provider
(``{"Federated": "<provider ARN>"}``, or ``"*"``; ``NotPrincipal`` inverts), its ``Action`` covers
``sts:AssumeRoleWithWebIdentity`` and its conditions hold against the request context: the
provider's keys (``<provider url>:aud``, ``:sub``, ``:oaud``, ``:amr``), ``sts:RoleSessionName``,
``aws:FederatedProvider`` and the request's own facts. An applicable Deny refuses; otherwise an
applicable Allow admits; otherwise the role does not trust the caller.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from openssm.iam.evaluate import Decision, EvaluationResult, MatchedStatement
from openssm.iam.policy import Policy

WEB_IDENTITY_ACTION: Final = "sts:AssumeRoleWithWebIdentity"


def _names_provider(principal: Any, provider_arn: str) -> bool:
    if principal == "*":
        return True
    if not isinstance(principal, dict):
        return False
    federated = principal.get("Federated")
    values = [federated] if isinstance(federated, str) else federated
    return isinstance(values, list) and any(value in ("*", provider_arn) for value in values)


def web_identity_context(
    provider_url: str, claims: Mapping[str, Any], audience: str, session_name: str, provider_arn: str
) -> dict[str, list[str]]:
    """The trust-policy keys of a verified token (lower case, as policies' keys are compared).

    ``<url>:aud`` is the audience the token was accepted for (its ``azp`` when that is one of the
    provider's client ids, as AWS does); ``<url>:oaud`` then holds the token's ``aud`` values.
    """
    prefix = provider_url.lower()
    context: dict[str, list[str]] = {
        f"{prefix}:aud": [audience],
        f"{prefix}:sub": [str(claims.get("sub", ""))],
        "sts:rolesessionname": [session_name],
        "aws:federatedprovider": [provider_arn],
    }
    raw_aud = claims.get("aud")
    audiences = [raw_aud] if isinstance(raw_aud, str) else raw_aud if isinstance(raw_aud, list) else []
    if claims.get("azp") == audience and audiences and audiences != [audience]:
        context[f"{prefix}:oaud"] = [str(value) for value in audiences]
    amr = claims.get("amr")
    if isinstance(amr, list) and all(isinstance(value, str) for value in amr):
        context[f"{prefix}:amr"] = list(amr)
    return context


def trust_decision(
    policy: Policy, provider_arn: str, context: Mapping[str, Sequence[str]], label: str = "trust policy"
) -> EvaluationResult:
    """Whether the trust policy lets the provider's token holder assume the role."""
    lowered = {key.lower(): values for key, values in context.items()}
    allows: list[MatchedStatement] = []
    denies: list[MatchedStatement] = []
    for statement in policy.statements:
        if _names_provider(statement.principal, provider_arn) == statement.not_principal:
            continue
        if not statement.action_matches(WEB_IDENTITY_ACTION) or not statement.conditions_hold(lowered):
            continue
        matched = MatchedStatement(label, statement.index, statement.sid, statement.effect)
        (denies if statement.effect == "Deny" else allows).append(matched)
    decision: Decision = "explicitDeny" if denies else "allowed" if allows else "implicitDeny"
    return EvaluationResult(decision, tuple(denies or allows))
