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
from openssm.store.tables import command_invocations, commands, instances

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
    cloudwatch_log_group_name: str | None  # None: /aws/ssm/<DocumentName> when enabled
    cloudwatch_output_enabled: bool
    cancel_requested: bool
    owner_arn: str

    @property
    def log_group(self) -> str | None:
        """The CloudWatch Logs group of its output, or None when that output is off."""
        if not self.cloudwatch_output_enabled:
            return None
        return self.cloudwatch_log_group_name or rc.default_log_group(self.document_name)


@dataclasses.dataclass(frozen=True, slots=True)
class InvocationRow:
    command_id: str
    instance_id: str
    instance_name: str | None
    status: str  # run_command.PENDING …
    status_details: str
    dispatched_at: dt.datetime | None  # sent towards its agent (rate controls)
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
        dispatched_at=None,
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
    """Commands with an invocation dispatched to ``instance_id`` and not delivered yet (nor past its
    deadline, nor cancelled); oldest first."""
    query = (
        sa.select(commands)
        .join(command_invocations, commands.c.command_id == command_invocations.c.command_id)
        .where(
            command_invocations.c.instance_id == instance_id,
            command_invocations.c.status == rc.PENDING,
            command_invocations.c.dispatched_at.is_not(None),
            command_invocations.c.delivered_at.is_(None),
            commands.c.delivery_deadline > now,
            commands.c.cancel_requested.is_(False),
        )
        .order_by(commands.c.requested_at)
    )
    return await every(db, query, CommandRow)


def _ending(status: str, details: str, now: dt.datetime) -> dict[str, Any]:
    return {"status": status, "status_details": details, "ended_at": now}


async def expire_undelivered(db: Db, *, now: dt.datetime, command_id: str | None = None) -> int:
    """Past a command's delivery deadline (TimeoutSeconds), what never reached its agent ends: still
    Pending (sent or waiting for a concurrency slot) as TimedOut / DeliveryTimedOut, and a cancel of
    an invocation the agent never received as Cancelled."""
    overdue = sa.select(commands.c.command_id).where(commands.c.delivery_deadline <= now)
    if command_id is not None:
        overdue = overdue.where(commands.c.command_id == command_id)
    of_overdue = command_invocations.c.command_id.in_(overdue)
    undelivered = command_invocations.c.delivered_at.is_(None)
    async with writing(db) as conn:
        timed_out = await execute(
            conn,
            sa.update(command_invocations)
            .where(of_overdue, undelivered, command_invocations.c.status == rc.PENDING)
            .values(_ending(rc.TIMED_OUT, rc.DELIVERY_TIMED_OUT, now)),
        )
        await execute(
            conn,
            sa.update(command_invocations)
            .where(of_overdue, undelivered, command_invocations.c.status == rc.CANCELLING)
            .values(_ending(rc.CANCELLED, rc.DETAILS[rc.CANCELLED], now)),
        )
    return timed_out


async def expire_unfinished(db: Db, *, now: dt.datetime) -> int:
    """Invocations still active when their command expires (delivery plus execution timeout: the
    agent went away mid-run, or its reply was lost) end as AWS ends them: TimedOut /
    DeliveryTimedOut (only the agent reports ExecutionTimedOut)."""
    statement = (
        sa.update(command_invocations)
        .where(
            command_invocations.c.status.in_(ACTIVE_STATUSES),
            command_invocations.c.command_id.in_(
                sa.select(commands.c.command_id).where(commands.c.expires_after <= now)
            ),
        )
        .values(_ending(rc.TIMED_OUT, rc.DELIVERY_TIMED_OUT, now))
    )
    return await execute(db, statement)


async def owes_instance(db: Db, instance_id: str) -> bool:
    """Whether ``instance_id`` has an invocation still Pending or Cancelling: all that a control
    channel opening may be owed (``pending_for_instance``, ``cancelling_for_instance``,
    ``waiting_for_instance``). One indexed look-up, where a fleet's agents coming over from a killed
    node, owed nothing, each cost those three."""
    query = (
        sa.select(command_invocations.c.command_id)
        .where(
            command_invocations.c.instance_id == instance_id,
            command_invocations.c.status.in_((rc.PENDING, rc.CANCELLING)),
        )
        .limit(1)
    )
    return bool(await scalars(db, query))


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
    """Mark the command cancelled: invocations not sent yet end as Cancelled at once; those sent to a
    connected agent (possibly on their way) or running become Cancelling until their agent reports
    the end. Returns the invocations to cancel on agents."""
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
        # Not sent: waiting for a slot, or dispatched to an agent connected nowhere (whose job is
        # only sent when it connects, and pending_for_instance skips cancelled ones).
        offline = sa.select(instances.c.instance_id).where(instances.c.control_node_id.is_(None))
        not_sent = sa.or_(
            command_invocations.c.dispatched_at.is_(None),
            sa.and_(
                command_invocations.c.delivered_at.is_(None),
                command_invocations.c.instance_id.in_(offline),
            ),
        )
        await conn.execute(
            sa.update(command_invocations)
            .where(*selected, not_sent, command_invocations.c.status == rc.PENDING)
            .values(_ending(rc.CANCELLED, rc.DETAILS[rc.CANCELLED], now))
        )
        running = await every(conn, sa.select(command_invocations).where(*selected), InvocationRow)
        await conn.execute(
            sa.update(command_invocations)
            .where(*selected)
            .values(status=rc.CANCELLING, status_details=rc.DETAILS[rc.CANCELLING])
        )
    return running


async def cancelling(db: Db, command_id: str) -> list[str]:
    """The instances whose invocation of ``command_id`` waits for its agent to confirm a cancel."""
    query = sa.select(command_invocations.c.instance_id).where(
        command_invocations.c.command_id == command_id, command_invocations.c.status == rc.CANCELLING
    )
    return [str(instance_id) for instance_id in await scalars(db, query)]


@dataclasses.dataclass(frozen=True, slots=True)
class Advance:
    """What one step of a command's rollout decided."""

    command: CommandRow
    dispatch: list[str]  # instance ids now dispatched: send them their job
    terminated: list[str]  # ended unsent (the command went over MaxErrors)


async def advance(db: Db, command_id: str, *, now: dt.datetime) -> Advance | None:
    """One step of the command's rollout (``run_command.plan_rollout``), in one transaction: the
    invocations it sends now are marked dispatched, those it gives up on end as Cancelled /
    Terminated. The command's row is locked for the step (PostgreSQL), so two nodes finishing
    invocations at once cannot both fill the same concurrency slot. None: no such command."""
    await expire_undelivered(db, now=now, command_id=command_id)
    async with writing(db) as conn:
        command = await first(
            conn, sa.select(commands).where(commands.c.command_id == command_id).with_for_update(), CommandRow
        )
        if command is None:
            return None
        rows = await every(
            conn,
            sa.select(command_invocations)
            .where(command_invocations.c.command_id == command_id)
            .order_by(command_invocations.c.instance_id),
            InvocationRow,
        )
        plan = rc.plan_rollout(
            [
                rc.InvocationState(
                    row.instance_id, row.status, row.status_details, row.dispatched_at is not None
                )
                for row in rows
            ],
            max_concurrency=command.max_concurrency,
            max_errors=command.max_errors,
            cancel_requested=command.cancel_requested,
        )
        waiting = (
            command_invocations.c.command_id == command_id,
            command_invocations.c.status == rc.PENDING,
            command_invocations.c.dispatched_at.is_(None),
        )
        if plan.dispatch:
            await conn.execute(
                sa.update(command_invocations)
                .where(*waiting, command_invocations.c.instance_id.in_(plan.dispatch))
                .values(dispatched_at=now)
            )
        if plan.terminate:
            await conn.execute(
                sa.update(command_invocations)
                .where(*waiting, command_invocations.c.instance_id.in_(plan.terminate))
                .values(_ending(rc.CANCELLED, rc.TERMINATED, now))
            )
    return Advance(command, list(plan.dispatch), list(plan.terminate))


async def waiting_for_instance(db: Db, instance_id: str) -> list[str]:
    """Commands with an invocation on ``instance_id`` that has not been sent yet."""
    query = sa.select(command_invocations.c.command_id).where(
        command_invocations.c.instance_id == instance_id,
        command_invocations.c.status == rc.PENDING,
        command_invocations.c.dispatched_at.is_(None),
    )
    return [str(command_id) for command_id in await scalars(db, query)]
