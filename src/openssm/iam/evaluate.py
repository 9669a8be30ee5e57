"""The decision: explicit Deny beats Allow, and no applicable Allow means an implicit deny.

Every statement of every policy is considered (order does not matter); the statements that
decided are reported for audit logs and the policy simulator.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Literal

from openssm.iam.policy import Policy
from openssm.iam.principal import Principal

Decision = Literal["allowed", "explicitDeny", "implicitDeny"]


@dataclasses.dataclass(frozen=True, slots=True)
class PolicySource:
    label: str  # policy ARN, or "user/<name>/inline/<policy>"
    policy: Policy


@dataclasses.dataclass(frozen=True, slots=True)
class AuthzRequest:
    principal: Principal
    action: str  # "ssm:StartSession"
    resource: str  # ARN or "*"
    context: Mapping[str, Sequence[str]] = dataclasses.field(default_factory=dict)  # keys case-insensitive


@dataclasses.dataclass(frozen=True, slots=True)
class MatchedStatement:
    source: str
    index: int
    sid: str | None
    effect: str


@dataclasses.dataclass(frozen=True, slots=True)
class EvaluationResult:
    decision: Decision
    matched: tuple[MatchedStatement, ...]

    @property
    def allowed(self) -> bool:
        return self.decision == "allowed"


def principal_context(principal: Principal) -> dict[str, list[str]]:
    """Condition keys that come from the identity itself (lowercased names)."""
    principal_arn = principal.arn
    if principal.type == "AssumedRole" and principal.role_name:
        # AWS gives the role's ARN here, not the session's (so policies can name the role).
        principal_arn = f"arn:aws:iam::{principal.account}:role/{principal.role_name}"
    facts = {
        "aws:userid": principal.user_id,
        "aws:principalarn": principal_arn,
        "aws:principalaccount": principal.account,
        "aws:principaltype": principal.type,
    }
    # An empty fact is unknown (a simulated caller), not the empty string.
    context: dict[str, list[str]] = {key: [value] for key, value in facts.items() if value}
    if principal.username is not None and principal.type == "User":
        context["aws:username"] = [principal.username]
    for tag_key, tag_value in principal.tags.items():
        context[f"aws:principaltag/{tag_key.lower()}"] = [tag_value]
    return context


def request_context(request: AuthzRequest) -> dict[str, Sequence[str]]:
    """The request context with lowercased keys; identity facts always come from the principal."""
    context: dict[str, Sequence[str]] = {key.lower(): values for key, values in request.context.items()}
    context.update(principal_context(request.principal))
    return context


def evaluate(policies: Sequence[PolicySource], request: AuthzRequest) -> EvaluationResult:
    context = request_context(request)
    action, resource = request.action, request.resource
    allows: list[MatchedStatement] = []
    denies: list[MatchedStatement] = []
    for source in policies:
        for statement in source.policy.statements_for(action):
            if statement.effect == "Allow" and denies:
                continue  # the outcome is a Deny already; only further Denies are worth reporting
            if not statement.resource_matches(resource, context) or not statement.conditions_hold(context):
                continue
            matched = MatchedStatement(source.label, statement.index, statement.sid, statement.effect)
            (denies if statement.effect == "Deny" else allows).append(matched)
    if denies:
        return EvaluationResult("explicitDeny", tuple(denies))
    if allows:
        return EvaluationResult("allowed", tuple(allows))
    return EvaluationResult("implicitDeny", ())
