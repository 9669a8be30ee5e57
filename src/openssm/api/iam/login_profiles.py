"""Console passwords: Create/Update/Get/DeleteLoginProfile. They set what the browser console checks
at sign-in (the user's scrypt password hash)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, Final

from openssm.api.errors import ApiError
from openssm.api.iam.common import USERS, caller_user_name, iam_action
from openssm.api.iam.params import boolean, required
from openssm.api.request import ApiRequest
from openssm.security.login_secrets import MAX_PASSWORD_CHARS, hash_password
from openssm.store.iam import users
from openssm.store.iam.users import UserRow

MIN_PASSWORD_CHARS: Final = 8


def _password(form: Mapping[str, str], *, needed: bool = True) -> str | None:
    value = form.get("Password")
    if value is None:
        if needed:
            required(form, "Password")
        return None
    if not MIN_PASSWORD_CHARS <= len(value) <= MAX_PASSWORD_CHARS:
        raise ApiError(
            "PasswordPolicyViolation",
            f"Password must be {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters long.",
        )
    return value


def _profile(user: str, created: dt.datetime) -> dict[str, Any]:
    return {"LoginProfile": {"UserName": user, "CreateDate": created, "PasswordResetRequired": False}}


async def _user(request: ApiRequest, form: Mapping[str, str], action: str) -> UserRow:
    """The user (the caller without ``UserName``), authorised for ``action``."""
    return await USERS.existing(request, action, caller_user_name(request, form))


@iam_action("CreateLoginProfile")
async def create_login_profile(request: ApiRequest, form: Mapping[str, str]) -> Any:
    password = _password(form)
    boolean(form, "PasswordResetRequired")  # accepted; the console has no forced-change flow yet
    user = await _user(request, form, "CreateLoginProfile")
    assert password is not None
    await users.create_login_profile(request.services.engine, user.name, hash_password(password))
    return _profile(user.name, request.now())


@iam_action("UpdateLoginProfile")
async def update_login_profile(request: ApiRequest, form: Mapping[str, str]) -> Any:
    password = _password(form, needed=False)
    boolean(form, "PasswordResetRequired")
    user = await _user(request, form, "UpdateLoginProfile")
    new_hash = hash_password(password) if password is not None else None
    await users.update_login_profile(request.services.engine, user.name, new_hash)


@iam_action("GetLoginProfile")
async def get_login_profile(request: ApiRequest, form: Mapping[str, str]) -> Any:
    user = await _user(request, form, "GetLoginProfile")
    await users.require_login_profile(request.services.engine, user.name)
    return _profile(user.name, user.created_at)


@iam_action("DeleteLoginProfile")
async def delete_login_profile(request: ApiRequest, form: Mapping[str, str]) -> Any:
    user = await _user(request, form, "DeleteLoginProfile")
    await users.delete_login_profile(request.services.engine, user.name)
