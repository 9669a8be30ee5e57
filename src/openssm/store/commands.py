"""Run Command (``commands``, one row per SendCommand, and ``command_invocations``, one per target):
written by the API, delivered and completed by the gateway node holding each target's control
channel. A command's status is derived from its invocations when read (``run_command.summarise``)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Final

import sqlalchemy as sa

from openssm.protocol import run_command as rc
from openssm.store.rows import JSON_LIST, JSON_OBJECT, Db, JsonObject, every, execute, first, scalars, writing
from openssm.store.tables import command_invocations, commands

# Invocations that may still change (a late or repeated reply never undoes an end).
ACTIVE_STATUSES: Final = (rc.PENDING, rc.IN_PROGRESS, rc.CANCELLING)


@dataclasses.dataclass(frozen=True, slots=True)
class CommandRow:
    command_id: str
    document_name: str
    document_version: str | None
    document_content: JsonObject  # {{ }} still in place
    parameters: Annotated[dict[str, list[str]], JSON_OBJECT]  # defaults filled in
    comment: str | None
    instance_ids: Annotated[list[str], JSON_LIST]  # as requested (empty with Targets)
    targets: Annotated[list[dict[str, Any]], JSON_LIST]  # [{Key, Values}] as requested
    requested_at: dt.datetime
    delivery_deadline: dt.datetime  # requested_at + TimeoutSeconds
    expires_after: dt.datetime  # … + the execution timeout
    timeout_seconds: int
    max_concurrency: str | None
    max_errors: str | None
    output_s3_region: str | None
    output_s3_bucket_name: str | None
    output_s3_key_prefix: str | None
    cancel_requested: bool
    owner_arn: str


@dataclasses.dataclass(frozen=True, slots=True)
class InvocationRow:
    command_id: str
    instance_id: str
    instance_name: str | None
    status: str  # run_command.PENDING …
    status_details: str
    delivered_at: dt.datetime | None  # agent_job_ack received
    started_at: dt.datetime | None
    ended_at: dt.datetime | None
    response_code: int
    plugins: Annotated[list[dict[str, Any]], JSON_LIST]  # per step: name, status, code, output …
    standard_output: str
    standard_error: str


def pending_invocation(command_id: str, instance_id: str, instance_name: str) -> InvocationRow:
    """A new invocation, waiting for delivery."""
    return InvocationRow(
        command_id=command_id,
        instance_id=instance_id,
        instance_name=instance_name,
        status=rc.PENDING,
        status_details=rc.DETAILS[rc.PENDING],
        delivered_at=None,
        started_at=None,
        ended_at=None,
        response_code=-1,
        plugins=[],
        standard_output="",
        standard_error="",
    )


async def create(db: Db, command: CommandRow, invocations: Sequence[InvocationRow]) -> None:
    """The command and its invocations, in one transaction."""
    async with writing(db) as conn:
        await conn.execute(sa.insert(commands).values(**dataclasses.asdict(command)))
        if invocations:
            await conn.execute(
                sa.insert(command_invocations), [dataclasses.asdict(row) for row in invocations]
            )


async def get_command(db: Db, command_id: str) -> CommandRow | None:
    return await first(db, sa.select(commands).where(commands.c.command_id == command_id), CommandRow)


async def list_commands(db: Db, *, instance_id: str | None = None) -> list[CommandRow]:
    """Newest first; only those with an invocation on ``instance_id`` when given."""
    query = sa.select(commands).order_by(commands.c.requested_at.desc(), commands.c.command_id)
    if instance_id is not None:
        on_instance = sa.select(command_invocations.c.command_id).where(
            command_invocations.c.instance_id == instance_id
        )
        query = query.where(commands.c.command_id.in_(on_instance))
    return await every(db, query, CommandRow)


def _invocation(command_id: str, instance_id: str) -> sa.ColumnElement[bool]:
    return sa.and_(
        command_invocations.c.command_id == command_id, command_invocations.c.instance_id == instance_id
    )


async def get_invocation(db: Db, command_id: str, instance_id: str) -> InvocationRow | None:
    query = sa.select(command_invocations).where(_invocation(command_id, instance_id))
    return await first(db, query, InvocationRow)


async def list_invocations(
    db: Db, *, command_ids: Sequence[str] | None = None, instance_id: str | None = None
) -> list[InvocationRow]:
    query = sa.select(command_invocations).order_by(
        command_invocations.c.command_id, command_invocations.c.instance_id
    )
    if command_ids is not None:
        query = query.where(command_invocations.c.command_id.in_(list(command_ids)))
    if instance_id is not None:
        query = query.where(command_invocations.c.instance_id == instance_id)
    return await every(db, query, InvocationRow)


async def pending_for_instance(db: Db, instance_id: str, *, now: dt.datetime) -> list[CommandRow]:
    """Commands with an invocation still waiting for delivery to ``instance_id`` (and not past
    their deadline nor cancelled); oldest first."""
    query = (
        sa.select(commands)
        .join(command_invocations, commands.c.command_id == command_invocations.c.command_id)
        .where(
            command_invocations.c.instance_id == instance_id,
            command_invocations.c.status == rc.PENDING,
            command_invocations.c.delivered_at.is_(None),
            commands.c.delivery_deadline > now,
            commands.c.cancel_requested.is_(False),
        )
        .order_by(commands.c.requested_at)
    )
    return await every(db, query, CommandRow)


async def _time_out(
    db: Db, overdue: sa.Select[Any], *which: sa.ColumnElement[bool], details: str, now: dt.datetime
) -> int:
    statement = (
        sa.update(command_invocations)
        .where(*which, command_invocations.c.command_id.in_(overdue))
        .values(status=rc.TIMED_OUT, status_details=details, ended_at=now)
    )
    return await execute(db, statement)


async def expire_undelivered(db: Db, *, now: dt.datetime) -> int:
    """Pending invocations past their command's delivery deadline become TimedOut/DeliveryTimedOut."""
    return await _time_out(
        db,
        sa.select(commands.c.command_id).where(commands.c.delivery_deadline <= now),
        command_invocations.c.status == rc.PENDING,
        command_invocations.c.delivered_at.is_(None),
        details=rc.DELIVERY_TIMED_OUT,
        now=now,
    )


async def expire_unfinished(db: Db, *, now: dt.datetime) -> int:
    """Invocations still active after their command expired (delivery plus execution timeout: the
    agent went away mid-run, or its reply was lost) become TimedOut/ExecutionTimedOut."""
    return await _time_out(
        db,
        sa.select(commands.c.command_id).where(commands.c.expires_after <= now),
        command_invocations.c.status.in_(ACTIVE_STATUSES),
        details=rc.DETAILS[rc.TIMED_OUT],
        now=now,
    )


async def cancelling_for_instance(db: Db, instance_id: str) -> list[str]:
    """Command ids whose cancel has not reached ``instance_id`` yet (it was away)."""
    query = sa.select(command_invocations.c.command_id).where(
        command_invocations.c.instance_id == instance_id, command_invocations.c.status == rc.CANCELLING
    )
    return [str(command_id) for command_id in await scalars(db, query)]


async def mark_delivered(db: Db, command_id: str, instance_id: str, *, now: dt.datetime) -> None:
    statement = (
        sa.update(command_invocations)
        .where(_invocation(command_id, instance_id), command_invocations.c.delivered_at.is_(None))
        .values(delivered_at=now)
    )
    await execute(db, statement)


async def update_active(db: Db, command_id: str, instance_id: str, values: Mapping[str, Any]) -> bool:
    """Set columns of an invocation that has not finished yet (a late or repeated reply never undoes
    an end)."""
    statement = (
        sa.update(command_invocations)
        .where(_invocation(command_id, instance_id), command_invocations.c.status.in_(ACTIVE_STATUSES))
        .values(values)
    )
    return await execute(db, statement) == 1


async def request_cancel(
    db: Db, command_id: str, instance_ids: Sequence[str] | None, *, now: dt.datetime
) -> list[InvocationRow]:
    """Mark the command cancelled: undelivered invocations end as Cancelled at once, running ones
    become Cancelling (the agent reports Cancelled). Returns the invocations to cancel on agents."""
    selected = [
        command_invocations.c.command_id == command_id,
        command_invocations.c.status.in_(ACTIVE_STATUSES),
    ]
    if instance_ids is not None:
        selected.append(command_invocations.c.instance_id.in_(list(instance_ids)))
    async with writing(db) as conn:
        await conn.execute(
            sa.update(commands).where(commands.c.command_id == command_id).values(cancel_requested=True)
        )
        await conn.execute(
            sa.update(command_invocations)
            .where(
                *selected,
                command_invocations.c.delivered_at.is_(None),
                command_invocations.c.status == rc.PENDING,
            )
            .values(status=rc.CANCELLED, status_details=rc.DETAILS[rc.CANCELLED], ended_at=now)
        )
        running = await every(conn, sa.select(command_invocations).where(*selected), InvocationRow)
        await conn.execute(
            sa.update(command_invocations)
            .where(*selected)
            .values(status=rc.CANCELLING, status_details=rc.DETAILS[rc.CANCELLING])
        )
    return running
