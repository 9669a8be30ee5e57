"""Server-wide settings (``settings``): named text values such as the account id, the master key's
check value and the records of virtual MFA devices (``iam.mfa_devices``)."""

from __future__ import annotations

import sqlalchemy as sa

from openssm.store.rows import Db, execute, reading
from openssm.store.tables import settings


async def get(db: Db, key: str) -> str | None:
    async with reading(db) as conn:
        value = (
            await conn.execute(sa.select(settings.c.value).where(settings.c.key == key))
        ).scalar_one_or_none()
    return None if value is None else str(value)


async def with_prefix(db: Db, prefix: str) -> list[tuple[str, str]]:
    """``(key, value)`` of every setting whose key starts with ``prefix``, by key."""
    query = sa.select(settings.c.key, settings.c.value).where(
        settings.c.key.startswith(prefix, autoescape=True)
    )
    async with reading(db) as conn:
        return [
            (str(key), str(value))
            for key, value in (await conn.execute(query.order_by(settings.c.key))).all()
        ]


async def insert(db: Db, key: str, value: str) -> None:
    """A new setting (an IntegrityError if the key exists)."""
    await execute(db, sa.insert(settings).values(key=key, value=value))


async def update(db: Db, key: str, value: str) -> bool:
    return await execute(db, sa.update(settings).where(settings.c.key == key).values(value=value)) == 1


async def delete(db: Db, key: str) -> bool:
    return await execute(db, sa.delete(settings).where(settings.c.key == key)) == 1
