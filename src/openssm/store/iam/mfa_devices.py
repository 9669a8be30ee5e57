"""Virtual MFA devices: created, then enabled for a user with two consecutive codes. A device is a
``settings`` row ``virtual-mfa/<device name>`` (JSON: the TOTP seed under the master key, its user
and enable date); enabling copies the seed to the user (``users.set_mfa_secret``), which is what the
console checks at sign-in."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
from typing import Any, Final

from openssm.store import settings
from openssm.store.errors import EntityAlreadyExists
from openssm.store.iam import users
from openssm.store.rows import Db, writing

PREFIX: Final = "virtual-mfa/"


@dataclasses.dataclass(frozen=True, slots=True)
class MfaDeviceRow:
    name: str
    seed_encrypted: bytes  # the TOTP seed under the master key
    user_name: str | None  # the user it is enabled for
    enabled_at: dt.datetime | None


def _row(name: str, value: str) -> MfaDeviceRow:
    record: dict[str, Any] = json.loads(value)
    enabled = record.get("enabled_at")
    return MfaDeviceRow(
        name=name,
        seed_encrypted=base64.b64decode(record["seed"]),
        user_name=record.get("user"),
        enabled_at=dt.datetime.fromisoformat(enabled) if enabled else None,
    )


def _value(device: MfaDeviceRow) -> str:
    return json.dumps(
        {
            "seed": base64.b64encode(device.seed_encrypted).decode(),
            "user": device.user_name,
            "enabled_at": device.enabled_at.isoformat() if device.enabled_at else None,
        }
    )


async def create(db: Db, name: str, seed_encrypted: bytes) -> None:
    device = MfaDeviceRow(name, seed_encrypted, None, None)
    async with writing(db) as conn:
        if await settings.get(conn, PREFIX + name) is not None:
            raise EntityAlreadyExists("MFADevice entity at the same path and name already exists.")
        await settings.insert(conn, PREFIX + name, _value(device))


async def get(db: Db, name: str) -> MfaDeviceRow | None:
    value = await settings.get(db, PREFIX + name)
    return None if value is None else _row(name, value)


async def of_user(db: Db, user_name: str) -> list[MfaDeviceRow]:
    devices = [_row(key.removeprefix(PREFIX), value) for key, value in await settings.with_prefix(db, PREFIX)]
    return [device for device in devices if device.user_name == user_name]


async def enable(db: Db, device: MfaDeviceRow, user_name: str, now: dt.datetime) -> None:
    """The device is now the user's: the console asks for its codes."""
    async with writing(db) as conn:
        enabled = dataclasses.replace(device, user_name=user_name, enabled_at=now)
        await settings.update(conn, PREFIX + device.name, _value(enabled))
        await users.set_mfa_secret(conn, user_name, device.seed_encrypted)


async def deactivate(db: Db, device: MfaDeviceRow) -> None:
    """The device is free again, and its user signs in without codes."""
    async with writing(db) as conn:
        await settings.update(
            conn, PREFIX + device.name, _value(dataclasses.replace(device, user_name=None, enabled_at=None))
        )
        if device.user_name is not None:
            await users.set_mfa_secret(conn, device.user_name, None)


async def delete(db: Db, name: str) -> None:
    await settings.delete(db, PREFIX + name)
