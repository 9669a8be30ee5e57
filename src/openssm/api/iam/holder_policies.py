"""Policies of users, groups and roles, the same nine actions for each: Attach/Detach<X>Policy,
ListAttached<X>Policies, Put/Get/Delete<X>Policy (inline) and List<X>Policies."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from openssm.api.iam.common import HOLDERS, iam_action
from openssm.api.iam.params import (
    HOLDER_MEMBERS,
    arn_param,
    encoded,
    holder_name,
    paginate,
    policy_document,
    required_name,
)
from openssm.api.request import ApiRequest
from openssm.iam import policy_size
from openssm.store.errors import LimitExceeded
from openssm.store.iam import holder_policies
from openssm.store.iam.holders import HolderType

# AWS quotas on inline policy size (characters, whitespace not counted).
INLINE_MAX_CHARS: Final[dict[HolderType, int]] = {"user": 2048, "group": 5120, "role": 10240}


def _register(holder_type: HolderType) -> None:
    word, member = holder_type.capitalize(), HOLDER_MEMBERS[holder_type]

    async def target(request: ApiRequest, form: Mapping[str, str], action: str, **context: list[str]) -> str:
        name = holder_name(form, holder_type)
        await HOLDERS[holder_type].authorize(request, action, name, context or None)
        return name

    async def policy_target(request: ApiRequest, form: Mapping[str, str], action: str) -> tuple[str, str]:
        """``PolicyArn`` and the holder, authorised with the policy ARN as ``iam:PolicyARN``."""
        arn = arn_param(form, "PolicyArn")
        return await target(request, form, action, **{"iam:PolicyARN": [arn]}), arn

    @iam_action(f"Attach{word}Policy")
    async def attach(request: ApiRequest, form: Mapping[str, str]) -> Any:
        name, arn = await policy_target(request, form, f"Attach{word}Policy")
        await holder_policies.attach(request.services.engine, holder_type, name, arn)

    @iam_action(f"Detach{word}Policy")
    async def detach(request: ApiRequest, form: Mapping[str, str]) -> Any:
        name, arn = await policy_target(request, form, f"Detach{word}Policy")
        await holder_policies.detach(request.services.engine, holder_type, name, arn)

    @iam_action(f"ListAttached{word}Policies")
    async def list_attached(request: ApiRequest, form: Mapping[str, str]) -> Any:
        name = await target(request, form, f"ListAttached{word}Policies")
        pairs = await holder_policies.attached(request.services.engine, holder_type, name)
        shapes = [{"PolicyName": policy_name, "PolicyArn": arn} for policy_name, arn in pairs]
        return paginate(form, shapes, f"ListAttached{word}Policies{name}", "AttachedPolicies")

    @iam_action(f"Put{word}Policy")
    async def put_inline(request: ApiRequest, form: Mapping[str, str]) -> Any:
        policy_name = required_name(form, "PolicyName", "policy")
        text, _ = policy_document(form, "PolicyDocument")
        name = await target(request, form, f"Put{word}Policy")
        limit = INLINE_MAX_CHARS[holder_type]
        if policy_size(text) > limit:
            raise LimitExceeded(f"Maximum policy size of {limit} bytes exceeded for {holder_type} {name}")
        await holder_policies.put_inline(request.services.engine, holder_type, name, policy_name, text)

    @iam_action(f"Get{word}Policy")
    async def get_inline(request: ApiRequest, form: Mapping[str, str]) -> Any:
        policy_name = required_name(form, "PolicyName", "policy")
        name = await target(request, form, f"Get{word}Policy")
        document = await holder_policies.get_inline(request.services.engine, holder_type, name, policy_name)
        return {member: name, "PolicyName": policy_name, "PolicyDocument": encoded(document)}

    @iam_action(f"Delete{word}Policy")
    async def delete_inline(request: ApiRequest, form: Mapping[str, str]) -> Any:
        policy_name = required_name(form, "PolicyName", "policy")
        name = await target(request, form, f"Delete{word}Policy")
        await holder_policies.delete_inline(request.services.engine, holder_type, name, policy_name)

    @iam_action(f"List{word}Policies")
    async def list_inline(request: ApiRequest, form: Mapping[str, str]) -> Any:
        name = await target(request, form, f"List{word}Policies")
        names = await holder_policies.inline_names(request.services.engine, holder_type, name)
        return paginate(form, names, f"List{word}Policies{name}", "PolicyNames")


for _holder_type in HOLDERS:
    _register(_holder_type)
