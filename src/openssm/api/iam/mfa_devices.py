"""Virtual MFA devices (TOTP): CreateVirtualMFADevice, EnableMFADevice, DeactivateMFADevice,
ListMFADevices, DeleteVirtualMFADevice. An enabled device's codes are asked for at console sign-in."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any, Final

from openssm.api.errors import ApiError
from openssm.api.iam.common import USERS, authorize, authorized_user, iam_action
from openssm.api.iam.params import holder_name, required
from openssm.api.request import ApiRequest
from openssm.security.login_secrets import base32_seed, new_totp_seed, totp_step
from openssm.store.errors import DeleteConflict, EntityAlreadyExists, NoSuchEntity
from openssm.store.iam import mfa_devices
from openssm.store.iam.mfa_devices import MfaDeviceRow

MFA_NAME_PATTERN: Final = r"[\w+=,.@-]+"
SERIAL_PATTERN: Final = r"arn:aws:iam::[0-9]{12}:mfa/[\w+=,.@/-]+"


def _serial(request: ApiRequest, device: str) -> str:
    return f"arn:aws:iam::{request.account}:mfa/{device}"


def _serial_param(form: Mapping[str, str]) -> str:
    return required(form, "SerialNumber", min_len=9, max_len=256, pattern=SERIAL_PATTERN)


def _not_found(serial: str) -> NoSuchEntity:
    return NoSuchEntity(f"MFA device {serial} cannot be found.")


async def _device(request: ApiRequest, serial: str) -> MfaDeviceRow | None:
    """The device a serial number names; NoSuchEntity if it is not one of this account's."""
    prefix = f"arn:aws:iam::{request.account}:mfa/"
    if not serial.startswith(prefix):
        raise _not_found(serial)
    return await mfa_devices.get(request.services.engine, serial[len(prefix) :].rsplit("/", 1)[-1])


async def _existing_device(request: ApiRequest, serial: str) -> MfaDeviceRow:
    device = await _device(request, serial)
    if device is None:
        raise _not_found(serial)
    return device


@iam_action("CreateVirtualMFADevice")
async def create_virtual_mfa_device(request: ApiRequest, form: Mapping[str, str]) -> Any:
    device = required(form, "VirtualMFADeviceName", max_len=226, pattern=MFA_NAME_PATTERN)
    serial = _serial(request, device)
    await authorize(request, "CreateVirtualMFADevice", serial)
    seed = new_totp_seed()
    await mfa_devices.create(request.services.engine, device, request.services.cipher.encrypt(seed))
    return {
        "VirtualMFADevice": {
            "SerialNumber": serial,
            # AWS returns the base32 text, base64-encoded (botocore decodes it to the base32 bytes).
            "Base32StringSeed": base64.b64encode(base32_seed(seed).encode()).decode(),
        }
    }


@iam_action("EnableMFADevice")
async def enable_mfa_device(request: ApiRequest, form: Mapping[str, str]) -> Any:
    name, serial = holder_name(form, "user"), _serial_param(form)
    code1 = required(form, "AuthenticationCode1", min_len=6, max_len=6, pattern=r"[0-9]{6}")
    code2 = required(form, "AuthenticationCode2", min_len=6, max_len=6, pattern=r"[0-9]{6}")
    await USERS.existing(request, "EnableMFADevice", name)
    device = await _existing_device(request, serial)
    if device.user_name is not None:
        raise EntityAlreadyExists(f"MFA device {serial} is already in use.")
    seed: bytes = request.services.cipher.decrypt(device.seed_encrypted)
    # Two consecutive codes prove the device is in step with the server, as AWS requires.
    now = request.now()
    first = totp_step(seed, code1, now.timestamp(), window=10)
    second = totp_step(seed, code2, now.timestamp(), window=10)
    if first is None or second != first + 1:
        raise ApiError("InvalidAuthenticationCode", "Authentication code for device is not valid.", 403)
    await mfa_devices.enable(request.services.engine, device, name, now)


@iam_action("DeactivateMFADevice")
async def deactivate_mfa_device(request: ApiRequest, form: Mapping[str, str]) -> Any:
    name, serial = holder_name(form, "user"), _serial_param(form)
    await USERS.authorize(request, "DeactivateMFADevice", name)
    device = await _device(request, serial)
    if device is None or device.user_name != name:
        raise NoSuchEntity(f"MFA Device with serial number {serial} does not exist.")
    await mfa_devices.deactivate(request.services.engine, device)


@iam_action("ListMFADevices")
async def list_mfa_devices(request: ApiRequest, form: Mapping[str, str]) -> Any:
    name = await authorized_user(request, form, "ListMFADevices")
    devices = await mfa_devices.of_user(request.services.engine, name)
    shapes = [
        {"UserName": name, "SerialNumber": _serial(request, device.name), "EnableDate": device.enabled_at}
        for device in devices
    ]
    return {"MFADevices": shapes, "IsTruncated": False}


@iam_action("DeleteVirtualMFADevice")
async def delete_virtual_mfa_device(request: ApiRequest, form: Mapping[str, str]) -> Any:
    serial = _serial_param(form)
    await authorize(request, "DeleteVirtualMFADevice", serial)
    device = await _existing_device(request, serial)
    if device.user_name is not None:
        raise DeleteConflict("MFA device is still in use.")
    await mfa_devices.delete(request.services.engine, device.name)
