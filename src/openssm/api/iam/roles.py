"""IAM roles: CreateRole, GetRole, ListRoles, DeleteRole."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from openssm.api.iam.common import ROLES, authorize, entity_shape, iam_action
from openssm.api.iam.params import encoded, holder_name, param, path_param, policy_document
from openssm.api.iam.tags import tag_context, tag_list, tags_param
from openssm.api.request import ApiRequest
from openssm.iam.arn import role_arn
from openssm.store.iam import roles
from openssm.store.iam.roles import RoleRow


def role_shape(role: RoleRow) -> dict[str, Any]:
    return {
        **entity_shape(role, "Role", role.role_id),
        "AssumeRolePolicyDocument": encoded(role.assume_role_policy),
        "Description": role.description,
        "MaxSessionDuration": 3600,
        "Tags": tag_list(role.tags),
    }


@iam_action("CreateRole")
async def create_role(request: ApiRequest, form: Mapping[str, str]) -> Any:
    name, path, tags = holder_name(form, "role"), path_param(form), tags_param(form)
    trust, _ = policy_document(form, "AssumeRolePolicyDocument", kind="trust")
    description = param(form, "Description", min_len=0, max_len=1000)
    await authorize(request, "CreateRole", role_arn(request.account, name, path), tag_context(tags))
    role = await roles.create(
        request.services.engine, request.account, name, path, trust, description, tags, request.now()
    )
    return {"Role": role_shape(role)}


@iam_action("GetRole")
async def get_role(request: ApiRequest, form: Mapping[str, str]) -> Any:
    return {"Role": role_shape(await ROLES.existing(request, "GetRole", holder_name(form, "role")))}


ROLES.register_list_and_delete(role_shape)
