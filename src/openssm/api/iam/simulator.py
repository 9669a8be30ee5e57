"""The policy simulator: SimulateCustomPolicy and SimulatePrincipalPolicy, evaluated by the same IAM
core as real requests (``openssm.iam.evaluate``), with the matched statements' positions."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Final, cast

from openssm.api.errors import ApiError
from openssm.api.iam.common import authorize, iam_action
from openssm.api.iam.params import arn_param, member_prefixes, members, paginate, param, required, validation
from openssm.api.request import ApiRequest
from openssm.iam import (
    AuthzRequest,
    MalformedPolicyDocument,
    PolicySource,
    evaluate,
    parse_policy,
    request_context,
    statement_positions,
)
from openssm.iam.principal import Principal
from openssm.security.policies import parse_stored
from openssm.security.principals import assumed_role_principal, user_principal
from openssm.store.iam import groups, holder_policies, holders
from openssm.store.iam.holders import HolderType

CONTEXT_TYPES: Final = (
    "string",
    "stringList",
    "numeric",
    "numericList",
    "boolean",
    "booleanList",
    "ip",
    "ipList",
    "binary",
    "binaryList",
    "date",
    "dateList",
)


def context_entries(form: Mapping[str, str]) -> dict[str, list[str]]:
    context: dict[str, list[str]] = {}
    for prefix in member_prefixes(form, "ContextEntries"):
        key = required(form, f"{prefix}.ContextKeyName", min_len=5, max_len=256)
        param(form, f"{prefix}.ContextKeyType", allowed=CONTEXT_TYPES)
        context[key.lower()] = members(form, f"{prefix}.ContextKeyValues")
    return context


def source_type(label: str) -> str:
    if label.startswith("PolicyInputList."):
        return "none"
    if label.startswith(("user/", "group/", "role/")):
        return label.split("/", 1)[0]
    return "aws-managed" if ":iam::aws:policy/" in label else "user-managed"


def simulated_principal(
    account: str, context: Mapping[str, Sequence[str]], caller_arn: str | None
) -> Principal:
    """A caller built from the ContextEntries (aws:username, aws:userid …) when no stored one applies."""

    def single(key: str) -> str | None:
        values = context.get(key)
        return values[0] if values and len(values) == 1 else None

    return Principal(
        arn=caller_arn or single("aws:principalarn") or "",
        account=account,
        type="User",
        user_id=single("aws:userid") or "",
        username=single("aws:username"),
    )


async def stored_principal(request: ApiRequest, arn: str) -> tuple[Principal, HolderType, str]:
    """The principal a ``PolicySourceArn`` names (user, group or role) and its holder key."""
    account = request.account
    match = re.fullmatch(r"arn:aws:iam::(\d{12}):(user|group|role)(/(?:.*/)?)?([\w+=,.@-]+)", arn, re.ASCII)
    if match is None or match.group(1) != account:
        raise ApiError("InvalidInput", f"Invalid ARN {arn}: not a user, group or role of account {account}.")
    kind, name = cast(HolderType, match.group(2)), match.group(4)
    engine = request.services.engine
    principal: Principal | None
    if kind == "user":
        principal = await user_principal(engine, account, name)
    elif kind == "role":
        principal = await assumed_role_principal(engine, account, name, "simulated-session")
    else:
        group = await groups.get(engine, name)
        principal = None if group is None else Principal(group.arn, account, "User", "", None)
    if principal is None:
        raise holders.not_found(kind, name)
    return principal, kind, name


def input_policies(form: Mapping[str, str], member: str) -> list[tuple[str, str, PolicySource]]:
    sources: list[tuple[str, str, PolicySource]] = []
    for index, text in enumerate(members(form, member), start=1):
        label = f"{member}.{index}"
        try:
            policy = parse_policy(text)
        except MalformedPolicyDocument as exc:
            raise MalformedPolicyDocument(f"{label}: {exc}") from None
        sources.append((label, text, PolicySource(label, policy)))
    return sources


def missing_keys(
    sources: Sequence[PolicySource], action: str, resource: str, context: Mapping[str, Sequence[str]]
) -> list[str]:
    """Condition keys of statements that match the action and resource but are absent from the context."""
    absent: list[str] = []
    for source in sources:
        for statement in source.policy.statements:
            if not (statement.action_matches(action) and statement.resource_matches(resource, context)):
                continue
            for condition in statement.conditions:
                if condition.key not in context and condition.key not in absent:
                    absent.append(condition.key)
    return absent


def simulate(
    sources: Sequence[tuple[str, str, PolicySource]],
    principal: Principal,
    actions: Sequence[str],
    resources: Sequence[str],
    context: Mapping[str, Sequence[str]],
) -> list[dict[str, Any]]:
    texts = {label: text for label, text, _ in sources}
    policy_sources = [source for _, _, source in sources]
    positions = {label: statement_positions(text) for label, text in texts.items()}

    def matched_shape(source: str, index: int) -> dict[str, Any]:
        shape: dict[str, Any] = {"SourcePolicyId": source, "SourcePolicyType": source_type(source)}
        spans = positions.get(source, [])
        if index < len(spans):
            (start_line, start_column), (end_line, end_column) = spans[index]
            shape["StartPosition"] = {"Line": start_line, "Column": start_column}
            shape["EndPosition"] = {"Line": end_line, "Column": end_column}
        return shape

    results: list[dict[str, Any]] = []
    for action in actions:
        for resource in resources:
            request = AuthzRequest(principal, action, resource, context)
            outcome = evaluate(policy_sources, request)
            matched = [matched_shape(m.source, m.index) for m in outcome.matched]
            absent = missing_keys(policy_sources, action, resource, request_context(request))
            results.append(
                {
                    "EvalActionName": action,
                    "EvalResourceName": resource,
                    "EvalDecision": outcome.decision,
                    "MatchedStatements": matched,
                    "MissingContextValues": absent,
                    "ResourceSpecificResults": [
                        {
                            "EvalResourceName": resource,
                            "EvalResourceDecision": outcome.decision,
                            "MatchedStatements": matched,
                            "MissingContextValues": absent,
                        }
                    ],
                }
            )
    return results


def simulation_inputs(
    form: Mapping[str, str],
) -> tuple[list[str], list[str], dict[str, list[str]], str | None]:
    actions = members(form, "ActionNames")
    if not actions:
        raise validation("ActionNames", None, "Member must have length greater than or equal to 1")
    resources = members(form, "ResourceArns") or ["*"]
    caller = param(form, "CallerArn", max_len=2048)
    return actions, resources, context_entries(form), caller


@iam_action("SimulateCustomPolicy")
async def simulate_custom_policy(request: ApiRequest, form: Mapping[str, str]) -> Any:
    sources = input_policies(form, "PolicyInputList")
    if not sources:
        raise validation("PolicyInputList", None, "Member must not be null")
    actions, resources, context, caller = simulation_inputs(form)
    await authorize(request, "SimulateCustomPolicy", "*")
    principal = simulated_principal(request.account, context, caller)
    return paginate(
        form, simulate(sources, principal, actions, resources, context), "Simulate", "EvaluationResults"
    )


@iam_action("SimulatePrincipalPolicy")
async def simulate_principal_policy(request: ApiRequest, form: Mapping[str, str]) -> Any:
    source_arn = arn_param(form, "PolicySourceArn")
    extra = input_policies(form, "PolicyInputList")
    actions, resources, context, _ = simulation_inputs(form)
    await authorize(request, "SimulatePrincipalPolicy", source_arn)
    principal, holder_type, name = await stored_principal(request, source_arn)
    sources: list[tuple[str, str, PolicySource]] = []
    for label, text in await holder_policies.applying_to(request.services.engine, holder_type, name):
        sources.append((label, text, parse_stored(label, text)))  # fails closed as the authoriser does
    results = simulate(sources + extra, principal, actions, resources, context)
    return paginate(form, results, "Simulate", "EvaluationResults")
