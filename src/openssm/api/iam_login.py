"""IAM console-login operations: login profiles (passwords) and virtual MFA devices (TOTP).

They set what the browser console checks at sign-in (``iam_users.password_hash``, scrypt, and
``iam_users.mfa_secret_encrypted``, the TOTP seed under the master key). Virtual MFA devices that are
created but not yet enabled, and which user holds which device, live in ``settings`` rows named
``virtual-mfa/<device name>`` (JSON: encrypted seed, user, enable date).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from openssm.api.errors import ApiError
from openssm.api.iam import (
    authorize,
    boolean,
    caller_user_name,
    iam_action,
    missing,
    required,
    required_name,
    user_resource,
)
from openssm.api.request import ApiRequest
from openssm.security.login_secrets import (
    MAX_PASSWORD_CHARS,
    base32_seed,
    hash_password,
    new_totp_seed,
    totp_step,
)
from openssm.store.tables import iam_users, settings

MIN_PASSWORD_CHARS = 8
MFA_PREFIX = "virtual-mfa/"
MFA_NAME_PATTERN = r"[\w+=,.@-]+"
SERIAL_PATTERN = r"arn:aws:iam::[0-9]{12}:mfa/[\w+=,.@/-]+"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _password(form: Mapping[str, str], name: str = "Password", *, needed: bool = True) -> str | None:
    value = form.get(name)
    if value is None:
        if needed:
            required(form, name)
        return None
    if not MIN_PASSWORD_CHARS <= len(value) <= MAX_PASSWORD_CHARS:
        raise ApiError(
            "PasswordPolicyViolation",
            f"Password must be {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters long.",
        )
    return value


async def _set_column(request: ApiRequest, user: str, **values: Any) -> None:
    async with request.services.engine.begin() as conn:
        await conn.execute(sa.update(iam_users).where(iam_users.c.name == user).values(**values))


def _profile(user: str, created: dt.datetime) -> dict[str, Any]:
    return {"LoginProfile": {"UserName": user, "CreateDate": created, "PasswordResetRequired": False}}


async def _password_user(request: ApiRequest, form: Mapping[str, str], action: str) -> tuple[str, Any]:
    name = caller_user_name(request, form)
    arn, row = await user_resource(request, name)
    await authorize(request, action, arn)
    if row is None:
        raise missing(f"The user with name {name} cannot be found.")
    async with request.services.engine.connect() as conn:
        current = (
            await conn.execute(sa.select(iam_users.c.password_hash).where(iam_users.c.name == name))
        ).scalar_one_or_none()
    return name, (row, current)


@iam_action("CreateLoginProfile")
async def create_login_profile(request: ApiRequest, form: Mapping[str, str]) -> Any:
    password = _password(form)
    boolean(form, "PasswordResetRequired")  # accepted; the console has no forced-change flow yet
    name, (_, current) = await _password_user(request, form, "CreateLoginProfile")
    if current:
        raise ApiError("EntityAlreadyExists", f"Login Profile for user {name} already exists.", 409)
    assert password is not None
    await _set_column(request, name, password_hash=hash_password(password))
    return _profile(name, _now())


@iam_action("UpdateLoginProfile")
async def update_login_profile(request: ApiRequest, form: Mapping[str, str]) -> Any:
    password = _password(form, needed=False)
    boolean(form, "PasswordResetRequired")
    name, (_, current) = await _password_user(request, form, "UpdateLoginProfile")
    if not current:
        raise missing(f"Login Profile for User {name} cannot be found.")
    if password is not None:
        await _set_column(request, name, password_hash=hash_password(password))
    return None


@iam_action("GetLoginProfile")
async def get_login_profile(request: ApiRequest, form: Mapping[str, str]) -> Any:
    name, (row, current) = await _password_user(request, form, "GetLoginProfile")
    if not current:
        raise missing(f"Login Profile for User {name} cannot be found.")
    return _profile(name, row.created_at)


@iam_action("DeleteLoginProfile")
async def delete_login_profile(request: ApiRequest, form: Mapping[str, str]) -> Any:
    name, (_, current) = await _password_user(request, form, "DeleteLoginProfile")
    if not current:
        raise missing(f"Login Profile for User {name} cannot be found.")
    await _set_column(request, name, password_hash=None)
    return None


# -- virtual MFA devices ----------------------------------------------------------------------------


def _serial(request: ApiRequest, device: str) -> str:
    return f"arn:aws:iam::{request.account}:mfa/{device}"


def _device_from_serial(request: ApiRequest, serial: str) -> str:
    prefix = f"arn:aws:iam::{request.account}:mfa/"
    if not serial.startswith(prefix):
        raise missing(f"MFA device {serial} cannot be found.")
    return serial[len(prefix) :].rsplit("/", 1)[-1]


async def _load_device(request: ApiRequest, device: str) -> dict[str, Any] | None:
    async with request.services.engine.connect() as conn:
        value = (
            await conn.execute(sa.select(settings.c.value).where(settings.c.key == MFA_PREFIX + device))
        ).scalar_one_or_none()
    return json.loads(value) if value else None


async def _save_device(request: ApiRequest, device: str, record: dict[str, Any], *, new: bool) -> None:
    async with request.services.engine.begin() as conn:
        if new:
            await conn.execute(sa.insert(settings).values(key=MFA_PREFIX + device, value=json.dumps(record)))
        else:
            await conn.execute(
                sa.update(settings)
                .where(settings.c.key == MFA_PREFIX + device)
                .values(value=json.dumps(record))
            )


def _seed(request: ApiRequest, record: dict[str, Any]) -> bytes:
    seed: bytes = request.services.cipher.decrypt(base64.b64decode(record["seed"]))
    return seed


@iam_action("CreateVirtualMFADevice")
async def create_virtual_mfa_device(request: ApiRequest, form: Mapping[str, str]) -> Any:
    device = required(form, "VirtualMFADeviceName", max_len=226, pattern=MFA_NAME_PATTERN)
    serial = _serial(request, device)
    await authorize(request, "CreateVirtualMFADevice", serial)
    if await _load_device(request, device) is not None:
        raise ApiError(
            "EntityAlreadyExists", "MFADevice entity at the same path and name already exists.", 409
        )
    seed = new_totp_seed()
    encrypted = base64.b64encode(request.services.cipher.encrypt(seed)).decode()
    await _save_device(request, device, {"seed": encrypted, "user": None, "enabled_at": None}, new=True)
    return {
        "VirtualMFADevice": {
            "SerialNumber": serial,
            # AWS returns the base32 text, base64-encoded (botocore decodes it to the base32 bytes).
            "Base32StringSeed": base64.b64encode(base32_seed(seed).encode()).decode(),
        }
    }


@iam_action("EnableMFADevice")
async def enable_mfa_device(request: ApiRequest, form: Mapping[str, str]) -> Any:
    name = required_name(form, "UserName", "user")
    serial = required(form, "SerialNumber", min_len=9, max_len=256, pattern=SERIAL_PATTERN)
    code1 = required(form, "AuthenticationCode1", min_len=6, max_len=6, pattern=r"[0-9]{6}")
    code2 = required(form, "AuthenticationCode2", min_len=6, max_len=6, pattern=r"[0-9]{6}")
    arn, row = await user_resource(request, name)
    await authorize(request, "EnableMFADevice", arn)
    if row is None:
        raise missing(f"The user with name {name} cannot be found.")
    device = _device_from_serial(request, serial)
    record = await _load_device(request, device)
    if record is None:
        raise missing(f"MFA device {serial} cannot be found.")
    if record["user"] is not None:
        raise ApiError("EntityAlreadyExists", f"MFA device {serial} is already in use.", 409)
    seed = _seed(request, record)
    # Two consecutive codes prove the device is in step with the server, as AWS requires.
    now = time.time()
    first = totp_step(seed, code1, now, window=10)
    second = totp_step(seed, code2, now, window=10)
    if first is None or second != first + 1:
        raise ApiError("InvalidAuthenticationCode", "Authentication code for device is not valid.", 403)
    record.update(user=name, enabled_at=_now().isoformat())
    await _save_device(request, device, record, new=False)
    await _set_column(request, name, mfa_secret_encrypted=base64.b64decode(record["seed"]))
    return None


@iam_action("DeactivateMFADevice")
async def deactivate_mfa_device(request: ApiRequest, form: Mapping[str, str]) -> Any:
    name = required_name(form, "UserName", "user")
    serial = required(form, "SerialNumber", min_len=9, max_len=256, pattern=SERIAL_PATTERN)
    arn, _ = await user_resource(request, name)
    await authorize(request, "DeactivateMFADevice", arn)
    device = _device_from_serial(request, serial)
    record = await _load_device(request, device)
    if record is None or record["user"] != name:
        raise missing(f"MFA Device with serial number {serial} does not exist.")
    record.update(user=None, enabled_at=None)
    await _save_device(request, device, record, new=False)
    await _set_column(request, name, mfa_secret_encrypted=None)
    return None


@iam_action("ListMFADevices")
async def list_mfa_devices(request: ApiRequest, form: Mapping[str, str]) -> Any:
    name = caller_user_name(request, form)
    arn, _ = await user_resource(request, name)
    await authorize(request, "ListMFADevices", arn)
    async with request.services.engine.connect() as conn:
        rows = (
            await conn.execute(
                sa.select(settings.c.key, settings.c.value).where(settings.c.key.startswith(MFA_PREFIX))
            )
        ).all()
    devices = []
    for key, value in rows:
        record = json.loads(value)
        if record.get("user") == name:
            devices.append(
                {
                    "UserName": name,
                    "SerialNumber": _serial(request, key[len(MFA_PREFIX) :]),
                    "EnableDate": dt.datetime.fromisoformat(record["enabled_at"]),
                }
            )
    return {"MFADevices": devices, "IsTruncated": False}


@iam_action("DeleteVirtualMFADevice")
async def delete_virtual_mfa_device(request: ApiRequest, form: Mapping[str, str]) -> Any:
    serial = required(form, "SerialNumber", min_len=9, max_len=256, pattern=SERIAL_PATTERN)
    await authorize(request, "DeleteVirtualMFADevice", serial)
    device = _device_from_serial(request, serial)
    record = await _load_device(request, device)
    if record is None:
        raise missing(f"MFA device {serial} cannot be found.")
    if record["user"] is not None:
        raise ApiError("DeleteConflict", "MFA device is still in use.", 409)
    async with request.services.engine.begin() as conn:
        await conn.execute(sa.delete(settings).where(settings.c.key == MFA_PREFIX + device))
    return None
