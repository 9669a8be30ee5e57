"""Hybrid activations (``activations``): created by an administrator, consumed by
``RegisterManagedInstance``. The activation code is stored only as its SHA-256."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import hmac
from collections.abc import Mapping
from typing import Any, TypedDict, Unpack

import sqlalchemy as sa

from openssm.store.rows import Db, Tags, every, execute, first, writing
from openssm.store.secrets import hash_token
from openssm.store.tables import activations


@dataclasses.dataclass(frozen=True, slots=True)
class ActivationRow:
    activation_id: str
    code_hash: str
    iam_role: str
    description: str | None
    default_instance_name: str | None
    registration_limit: int
    registrations_count: int
    expiration_date: dt.datetime
    created_at: dt.datetime
    tags: Tags


class Claim(enum.Enum):
    """How counting one registration against an activation went."""

    OK = "ok"
    UNKNOWN = "unknown"  # no such activation id
    WRONG_CODE = "code"
    EXPIRED = "expired"
    LIMIT = "limit"  # its registration limit is reached


class NewActivation(TypedDict):
    activation_id: str
    iam_role: str
    description: str | None
    default_instance_name: str | None
    registration_limit: int
    expiration_date: dt.datetime


async def create(
    db: Db, *, code: str, tags: Mapping[str, str], now: dt.datetime, **activation: Unpack[NewActivation]
) -> None:
    """A new activation; only the code's hash is kept."""
    statement = sa.insert(activations).values(
        **activation, code_hash=hash_token(code), registrations_count=0, created_at=now, tags=dict(tags)
    )
    await execute(db, statement)


def _by_id(activation_id: str) -> sa.Select[Any]:
    return sa.select(activations).where(activations.c.activation_id == activation_id)


async def get(db: Db, activation_id: str) -> ActivationRow | None:
    return await first(db, _by_id(activation_id), ActivationRow)


async def list_all(db: Db) -> list[ActivationRow]:
    query = sa.select(activations).order_by(activations.c.created_at, activations.c.activation_id)
    return await every(db, query, ActivationRow)


async def delete(db: Db, activation_id: str) -> bool:
    return await execute(db, sa.delete(activations).where(activations.c.activation_id == activation_id)) == 1


async def claim_registration(
    db: Db, activation_id: str, code: str, *, now: dt.datetime
) -> tuple[Claim, ActivationRow | None]:
    """Count one registration against the activation, atomically, if the code is right, the
    activation has not expired and its limit is not reached; the activation as read (None if unknown)."""
    async with writing(db) as conn:
        row = await first(conn, _by_id(activation_id), ActivationRow)
        if row is None:
            return Claim.UNKNOWN, None
        if not hmac.compare_digest(row.code_hash, hash_token(code)):
            return Claim.WRONG_CODE, row
        if row.expiration_date <= now:
            return Claim.EXPIRED, row
        # The WHERE re-checks the limit so two concurrent registrations cannot both take the last slot.
        taken = await execute(
            conn,
            sa.update(activations)
            .where(
                activations.c.activation_id == activation_id,
                activations.c.registrations_count < activations.c.registration_limit,
            )
            .values(registrations_count=activations.c.registrations_count + 1),
        )
        return Claim.OK if taken else Claim.LIMIT, row
