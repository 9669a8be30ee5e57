"""KMS keys and aliases (``kms_keys``, ``kms_aliases``), for :mod:`openssm.api.kms`.

A key's 256-bit material is encrypted under the server's master key before it is written and
decrypted only when a caller needs it; no function here hands out or takes the material in clear
except :func:`create` (which encrypts it) and :func:`material` (which decrypts it).
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import sqlalchemy as sa

from openssm.store.errors import EntityAlreadyExists
from openssm.store.rows import Db, every, first, reading, writing
from openssm.store.secrets import SecretCipher
from openssm.store.tables import kms_aliases, kms_keys


@dataclasses.dataclass(frozen=True, slots=True)
class KeyRow:
    key_id: str
    description: str
    key_state: str
    created_by: str
    created_at: dt.datetime


@dataclasses.dataclass(frozen=True, slots=True)
class AliasRow:
    alias_name: str
    target_key_id: str
    created_at: dt.datetime


_KEY_COLUMNS = (
    kms_keys.c.key_id,
    kms_keys.c.description,
    kms_keys.c.key_state,
    kms_keys.c.created_by,
    kms_keys.c.created_at,
)


async def create(
    db: Db,
    cipher: SecretCipher,
    *,
    key_id: str,
    material: bytes,
    description: str,
    created_by: str,
    now: dt.datetime,
) -> KeyRow:
    row = KeyRow(key_id, description, "Enabled", created_by, now)
    async with writing(db) as conn:
        await conn.execute(
            sa.insert(kms_keys).values(**dataclasses.asdict(row), material_encrypted=cipher.encrypt(material))
        )
    return row


async def get(db: Db, key_id: str) -> KeyRow | None:
    return await first(db, sa.select(*_KEY_COLUMNS).where(kms_keys.c.key_id == key_id), KeyRow)


async def material(db: Db, cipher: SecretCipher, key_id: str) -> bytes | None:
    """The key's material in clear (for one Encrypt/Decrypt), or None if there is no such key."""
    async with reading(db) as conn:
        stored = (
            await conn.execute(sa.select(kms_keys.c.material_encrypted).where(kms_keys.c.key_id == key_id))
        ).scalar_one_or_none()
    return None if stored is None else cipher.decrypt(bytes(stored))


async def every_key(db: Db) -> list[KeyRow]:
    return await every(
        db, sa.select(*_KEY_COLUMNS).order_by(kms_keys.c.created_at, kms_keys.c.key_id), KeyRow
    )


async def create_alias(db: Db, alias_name: str, key_id: str, now: dt.datetime) -> None:
    async with writing(db) as conn:
        taken = (
            await conn.execute(
                sa.select(kms_aliases.c.alias_name).where(kms_aliases.c.alias_name == alias_name)
            )
        ).first()
        if taken is not None:
            raise EntityAlreadyExists(f"An alias with the name {alias_name} already exists")
        await conn.execute(
            sa.insert(kms_aliases).values(alias_name=alias_name, target_key_id=key_id, created_at=now)
        )


async def alias(db: Db, alias_name: str) -> AliasRow | None:
    return await first(db, sa.select(kms_aliases).where(kms_aliases.c.alias_name == alias_name), AliasRow)


async def aliases(db: Db, key_id: str | None = None) -> list[AliasRow]:
    query = sa.select(kms_aliases).order_by(kms_aliases.c.alias_name)
    if key_id is not None:
        query = query.where(kms_aliases.c.target_key_id == key_id)
    return await every(db, query, AliasRow)
