"""IAM groups and their members: CreateGroup, GetGroup, ListGroups, DeleteGroup, AddUserToGroup,
RemoveUserFromGroup, ListGroupsForUser."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from openssm.api.iam.common import GROUPS, USERS, authorize, entity_shape, iam_action
from openssm.api.iam.params import holder_name, paginate, path_param
from openssm.api.iam.users import user_shape
from openssm.api.request import ApiRequest
from openssm.iam.arn import group_arn
from openssm.store.iam import groups, users
from openssm.store.iam.groups import GroupRow


def group_shape(group: GroupRow) -> dict[str, Any]:
    return entity_shape(group, "Group", group.group_id)


@iam_action("CreateGroup")
async def create_group(request: ApiRequest, form: Mapping[str, str]) -> Any:
    name, path = holder_name(form, "group"), path_param(form)
    await authorize(request, "CreateGroup", group_arn(request.account, name, path))
    group = await groups.create(request.services.engine, request.account, name, path, request.now())
    return {"Group": group_shape(group)}


@iam_action("GetGroup")
async def get_group(request: ApiRequest, form: Mapping[str, str]) -> Any:
    name = holder_name(form, "group")
    group = await GROUPS.existing(request, "GetGroup", name)
    members = await users.in_group(request.services.engine, name)
    return {
        "Group": group_shape(group),
        **paginate(form, [user_shape(u) for u in members], f"GetGroup{name}", "Users"),
    }


GROUPS.register_list_and_delete(group_shape)


async def _membership(request: ApiRequest, form: Mapping[str, str], action: str) -> tuple[str, str]:
    """The group and user of Add/RemoveUserToGroup, authorised on the group."""
    group, user = holder_name(form, "group"), holder_name(form, "user")
    await GROUPS.authorize(request, action, group)
    return group, user


@iam_action("AddUserToGroup")
async def add_user_to_group(request: ApiRequest, form: Mapping[str, str]) -> Any:
    await groups.add_user(request.services.engine, *await _membership(request, form, "AddUserToGroup"))


@iam_action("RemoveUserFromGroup")
async def remove_user_from_group(request: ApiRequest, form: Mapping[str, str]) -> Any:
    await groups.remove_user(
        request.services.engine, *await _membership(request, form, "RemoveUserFromGroup")
    )


@iam_action("ListGroupsForUser")
async def list_groups_for_user(request: ApiRequest, form: Mapping[str, str]) -> Any:
    name = holder_name(form, "user")
    await USERS.existing(request, "ListGroupsForUser", name)
    listed = await groups.of_user(request.services.engine, name)
    return paginate(form, [group_shape(g) for g in listed], f"ListGroupsForUser{name}", "Groups")
