"""Run Command rows: ``commands`` (one per SendCommand) and ``command_invocations`` (one per target)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from openssm.store.tables import command_invocations, commands

ACTIVE_STATUSES = ("Pending", "InProgress", "Cancelling")
FINAL_STATUSES = ("Success", "Failed", "TimedOut", "Cancelled")


async def create(engine: AsyncEngine, command: dict[str, Any], invocations: Sequence[dict[str, Any]]) -> None:
    """The command and its invocations, in one transaction."""
    async with engine.begin() as conn:
        await conn.execute(sa.insert(commands).values(**command))
        if invocations:
            await conn.execute(sa.insert(command_invocations), [dict(row) for row in invocations])


async def get_command(engine: AsyncEngine, command_id: str) -> dict[str, Any] | None:
    async with engine.connect() as conn:
        row = (
            (await conn.execute(sa.select(commands).where(commands.c.command_id == command_id)))
            .mappings()
            .first()
        )
    return dict(row) if row is not None else None


async def list_commands(engine: AsyncEngine, *, instance_id: str | None = None) -> list[dict[str, Any]]:
    """Newest first; only those with an invocation on ``instance_id`` when given."""
    query = sa.select(commands).order_by(commands.c.requested_at.desc(), commands.c.command_id)
    if instance_id is not None:
        query = query.where(
            commands.c.command_id.in_(
                sa.select(command_invocations.c.command_id).where(
                    command_invocations.c.instance_id == instance_id
                )
            )
        )
    async with engine.connect() as conn:
        return [dict(row) for row in (await conn.execute(query)).mappings().all()]


async def get_invocation(engine: AsyncEngine, command_id: str, instance_id: str) -> dict[str, Any] | None:
    async with engine.connect() as conn:
        row = (
            (
                await conn.execute(
                    sa.select(command_invocations).where(
                        command_invocations.c.command_id == command_id,
                        command_invocations.c.instance_id == instance_id,
                    )
                )
            )
            .mappings()
            .first()
        )
    return dict(row) if row is not None else None


async def list_invocations(
    engine: AsyncEngine, *, command_ids: Sequence[str] | None = None, instance_id: str | None = None
) -> list[dict[str, Any]]:
    query = sa.select(command_invocations).order_by(
        command_invocations.c.command_id, command_invocations.c.instance_id
    )
    if command_ids is not None:
        query = query.where(command_invocations.c.command_id.in_(list(command_ids)))
    if instance_id is not None:
        query = query.where(command_invocations.c.instance_id == instance_id)
    async with engine.connect() as conn:
        return [dict(row) for row in (await conn.execute(query)).mappings().all()]


async def pending_for_instance(
    engine: AsyncEngine, instance_id: str, now: dt.datetime
) -> list[dict[str, Any]]:
    """Invocations still waiting for delivery to ``instance_id`` (and not past their deadline),
    joined with what the agent needs from their command; oldest first."""
    query = (
        sa.select(command_invocations.c.instance_id, commands)
        .join(commands, commands.c.command_id == command_invocations.c.command_id)
        .where(
            command_invocations.c.instance_id == instance_id,
            command_invocations.c.status == "Pending",
            command_invocations.c.delivered_at.is_(None),
            commands.c.delivery_deadline > now,
            commands.c.cancel_requested.is_(False),
        )
        .order_by(commands.c.requested_at)
    )
    async with engine.connect() as conn:
        return [dict(row) for row in (await conn.execute(query)).mappings().all()]


async def expire_undelivered(engine: AsyncEngine, now: dt.datetime) -> int:
    """Pending invocations past their command's delivery deadline become TimedOut/DeliveryTimedOut."""
    overdue = sa.select(commands.c.command_id).where(commands.c.delivery_deadline <= now)
    async with engine.begin() as conn:
        result = await conn.execute(
            sa.update(command_invocations)
            .where(
                command_invocations.c.status == "Pending",
                command_invocations.c.delivered_at.is_(None),
                command_invocations.c.command_id.in_(overdue),
            )
            .values(status="TimedOut", status_details="DeliveryTimedOut", ended_at=now)
        )
    return int(result.rowcount or 0)


async def expire_unfinished(engine: AsyncEngine, now: dt.datetime) -> int:
    """Invocations still active after their command expired (delivery plus execution timeout: the
    agent went away mid-run, or its reply was lost) become TimedOut/ExecutionTimedOut."""
    expired = sa.select(commands.c.command_id).where(commands.c.expires_after <= now)
    async with engine.begin() as conn:
        result = await conn.execute(
            sa.update(command_invocations)
            .where(
                command_invocations.c.status.in_(ACTIVE_STATUSES),
                command_invocations.c.command_id.in_(expired),
            )
            .values(status="TimedOut", status_details="ExecutionTimedOut", ended_at=now)
        )
    return int(result.rowcount or 0)


async def cancelling_for_instance(engine: AsyncEngine, instance_id: str) -> list[str]:
    """Command ids whose cancel has not reached ``instance_id`` yet (it was away)."""
    query = sa.select(command_invocations.c.command_id).where(
        command_invocations.c.instance_id == instance_id, command_invocations.c.status == "Cancelling"
    )
    async with engine.connect() as conn:
        return [row[0] for row in (await conn.execute(query)).all()]


async def mark_delivered(engine: AsyncEngine, command_id: str, instance_id: str, now: dt.datetime) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            sa.update(command_invocations)
            .where(
                command_invocations.c.command_id == command_id,
                command_invocations.c.instance_id == instance_id,
                command_invocations.c.delivered_at.is_(None),
            )
            .values(delivered_at=now)
        )


async def update_active(engine: AsyncEngine, command_id: str, instance_id: str, **values: Any) -> bool:
    """Update an invocation that has not finished yet (a late or repeated reply never undoes an end)."""
    async with engine.begin() as conn:
        result = await conn.execute(
            sa.update(command_invocations)
            .where(
                command_invocations.c.command_id == command_id,
                command_invocations.c.instance_id == instance_id,
                command_invocations.c.status.in_(ACTIVE_STATUSES),
            )
            .values(**values)
        )
    return bool(result.rowcount)


async def request_cancel(
    engine: AsyncEngine, command_id: str, instance_ids: Sequence[str] | None, now: dt.datetime
) -> list[dict[str, Any]]:
    """Mark the command cancelled: undelivered invocations end as Cancelled at once, running ones
    become Cancelling (the agent reports Cancelled). Returns the invocations to cancel on agents."""
    selected = [
        command_invocations.c.command_id == command_id,
        command_invocations.c.status.in_(ACTIVE_STATUSES),
    ]
    if instance_ids is not None:
        selected.append(command_invocations.c.instance_id.in_(list(instance_ids)))
    async with engine.begin() as conn:
        await conn.execute(
            sa.update(commands).where(commands.c.command_id == command_id).values(cancel_requested=True)
        )
        await conn.execute(
            sa.update(command_invocations)
            .where(
                *selected,
                command_invocations.c.delivered_at.is_(None),
                command_invocations.c.status == "Pending",
            )
            .values(status="Cancelled", status_details="Cancelled", ended_at=now)
        )
        running = (await conn.execute(sa.select(command_invocations).where(*selected))).mappings().all()
        await conn.execute(
            sa.update(command_invocations)
            .where(*selected)
            .values(status="Cancelling", status_details="Cancelling")
        )
    return [dict(row) for row in running]
