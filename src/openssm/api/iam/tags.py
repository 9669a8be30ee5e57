"""Tags of IAM entities: the ``Tags`` parameter of Create* calls, their condition keys, and the
``TagUser`` / ``UntagUser`` / ``ListUserTags`` actions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from openssm.api.iam.common import USERS, iam_action
from openssm.api.iam.params import (
    at_least_one,
    holder_name,
    member_prefixes,
    members,
    paginate,
    param,
    required,
    validation,
)
from openssm.api.request import ApiRequest
from openssm.store.iam import users
from openssm.store.iam.holders import MAX_TAGS


def tags_param(form: Mapping[str, str]) -> dict[str, str]:
    tags: dict[str, str] = {}
    for prefix in member_prefixes(form, "Tags"):
        key = required(form, f"{prefix}.Key", max_len=128)
        tags[key] = param(form, f"{prefix}.Value", min_len=0, max_len=256) or ""
    if len(tags) > MAX_TAGS:
        raise validation("Tags", None, f"Member must have length less than or equal to {MAX_TAGS}")
    return tags


def tag_list(tags: Mapping[str, str]) -> list[dict[str, str]] | None:
    return [{"Key": key, "Value": value} for key, value in tags.items()] or None


def tag_context(tags: Mapping[str, str]) -> dict[str, list[str]] | None:
    """``aws:RequestTag/<key>`` and ``aws:TagKeys`` of a request that sets tags (None: it sets none)."""
    if not tags:
        return None
    context: dict[str, list[str]] = {f"aws:RequestTag/{key}": [value] for key, value in tags.items()}
    context["aws:TagKeys"] = list(tags)
    return context


@iam_action("TagUser")
async def tag_user(request: ApiRequest, form: Mapping[str, str]) -> Any:
    name, tags = holder_name(form, "user"), tags_param(form)
    at_least_one(list(tags), "Tags")
    await USERS.authorize(request, "TagUser", name, tag_context(tags))
    await users.tag(request.services.engine, name, tags)


@iam_action("UntagUser")
async def untag_user(request: ApiRequest, form: Mapping[str, str]) -> Any:
    name, keys = holder_name(form, "user"), members(form, "TagKeys")
    at_least_one(keys, "TagKeys")
    await USERS.authorize(request, "UntagUser", name, {"aws:TagKeys": keys})
    await users.untag(request.services.engine, name, keys)


@iam_action("ListUserTags")
async def list_user_tags(request: ApiRequest, form: Mapping[str, str]) -> Any:
    name = holder_name(form, "user")
    user = await USERS.existing(request, "ListUserTags", name)
    return paginate(form, tag_list(user.tags) or [], f"ListUserTags{name}", "Tags")
