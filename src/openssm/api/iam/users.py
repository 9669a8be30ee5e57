"""IAM users: CreateUser, GetUser, ListUsers, DeleteUser."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from openssm.api.iam.common import USERS, authorize, caller_user_name, entity_shape, iam_action
from openssm.api.iam.params import holder_name, path_param
from openssm.api.iam.tags import tag_context, tag_list, tags_param
from openssm.api.request import ApiRequest
from openssm.iam.arn import user_arn
from openssm.store.iam import users
from openssm.store.iam.users import UserRow


def user_shape(user: UserRow) -> dict[str, Any]:
    return {**entity_shape(user, "User", user.user_id), "Tags": tag_list(user.tags)}


@iam_action("CreateUser")
async def create_user(request: ApiRequest, form: Mapping[str, str]) -> Any:
    name, path, tags = holder_name(form, "user"), path_param(form), tags_param(form)
    await authorize(request, "CreateUser", user_arn(request.account, name, path), tag_context(tags))
    user = await users.create(request.services.engine, request.account, name, path, tags, request.now())
    return {"User": user_shape(user)}


@iam_action("GetUser")
async def get_user(request: ApiRequest, form: Mapping[str, str]) -> Any:
    return {"User": user_shape(await USERS.existing(request, "GetUser", caller_user_name(request, form)))}


USERS.register_list_and_delete(user_shape)
