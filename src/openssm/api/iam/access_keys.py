"""Users' access keys: CreateAccessKey, ListAccessKeys, UpdateAccessKey, DeleteAccessKey.

Without ``UserName`` each acts on the calling user's own keys, as in AWS.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from openssm.api.iam.common import USERS, authorized_user, caller_user_name, iam_action
from openssm.api.iam.params import paginate, required
from openssm.api.request import ApiRequest
from openssm.store import access_keys

ACCESS_KEY_PATTERN: Final = r"[\w]+"


@iam_action("CreateAccessKey")
async def create_access_key(request: ApiRequest, form: Mapping[str, str]) -> Any:
    name = caller_user_name(request, form)
    await USERS.existing(request, "CreateAccessKey", name)
    now = request.now()
    issued = await access_keys.create_for_user(request.services.engine, request.services.cipher, name, now)
    # The secret is returned this once; the store keeps it only encrypted.
    return {
        "AccessKey": {
            "UserName": name,
            "AccessKeyId": issued.access_key_id,
            "Status": "Active",
            "SecretAccessKey": issued.secret_access_key,
            "CreateDate": now,
        }
    }


@iam_action("ListAccessKeys")
async def list_access_keys(request: ApiRequest, form: Mapping[str, str]) -> Any:
    name = await authorized_user(request, form, "ListAccessKeys")
    keys = await access_keys.list_for_user(request.services.engine, name)
    shapes = [
        {"UserName": name, "AccessKeyId": k.access_key_id, "Status": k.status, "CreateDate": k.created_at}
        for k in keys
    ]
    return paginate(form, shapes, f"ListAccessKeys{name}", "AccessKeyMetadata")


async def _key_target(request: ApiRequest, form: Mapping[str, str], action: str) -> tuple[str, str]:
    """The user and ``AccessKeyId``; without UserName the key must belong to the calling user."""
    key_id = required(form, "AccessKeyId", min_len=16, max_len=128, pattern=ACCESS_KEY_PATTERN)
    return await authorized_user(request, form, action), key_id


@iam_action("UpdateAccessKey")
async def update_access_key(request: ApiRequest, form: Mapping[str, str]) -> Any:
    status = required(form, "Status", allowed=("Active", "Inactive"))
    name, key_id = await _key_target(request, form, "UpdateAccessKey")
    await access_keys.set_user_key_status(request.services.engine, name, key_id, status)


@iam_action("DeleteAccessKey")
async def delete_access_key(request: ApiRequest, form: Mapping[str, str]) -> Any:
    await access_keys.delete_user_key(
        request.services.engine, *await _key_target(request, form, "DeleteAccessKey")
    )
