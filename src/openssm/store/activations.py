"""Hybrid activations: created by an administrator, consumed by ``RegisterManagedInstance``."""

from __future__ import annotations

import datetime as dt
import hmac
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from openssm.store.tables import activations


async def insert(engine: AsyncEngine, **values: Any) -> None:
    async with engine.begin() as conn:
        await conn.execute(sa.insert(activations).values(**values))


async def get(engine: AsyncEngine, activation_id: str) -> dict[str, Any] | None:
    async with engine.connect() as conn:
        row = (
            (await conn.execute(sa.select(activations).where(activations.c.activation_id == activation_id)))
            .mappings()
            .first()
        )
    return dict(row) if row is not None else None


async def list_all(engine: AsyncEngine) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = (
            (
                await conn.execute(
                    sa.select(activations).order_by(activations.c.created_at, activations.c.activation_id)
                )
            )
            .mappings()
            .all()
        )
    return [dict(row) for row in rows]


async def delete(engine: AsyncEngine, activation_id: str) -> bool:
    async with engine.begin() as conn:
        result = await conn.execute(
            sa.delete(activations).where(activations.c.activation_id == activation_id)
        )
    return bool(result.rowcount)


async def claim_registration(
    engine: AsyncEngine, activation_id: str, code_hash: str, now: dt.datetime
) -> str:
    """Count one registration against the activation, atomically.

    Returns "ok", or why not: "unknown" (no such id), "code" (wrong code), "expired", "limit".
    """
    async with engine.begin() as conn:
        row = (
            (await conn.execute(sa.select(activations).where(activations.c.activation_id == activation_id)))
            .mappings()
            .first()
        )
        if row is None:
            return "unknown"
        if not hmac.compare_digest(row["code_hash"], code_hash):
            return "code"
        if row["expiration_date"] <= now:
            return "expired"
        # The WHERE re-checks the limit so two concurrent registrations cannot both take the last slot.
        result = await conn.execute(
            sa.update(activations)
            .where(
                activations.c.activation_id == activation_id,
                activations.c.registrations_count < activations.c.registration_limit,
            )
            .values(registrations_count=activations.c.registrations_count + 1)
        )
        return "ok" if result.rowcount else "limit"
