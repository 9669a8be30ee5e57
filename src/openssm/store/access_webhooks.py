"""The access webhook's outbox (``access_webhook_deliveries``): a row is written in the transaction that
makes the request or the decision, so no event is lost to a crash or a restart, and it stays pending
until the receiver accepts it. A node claims a delivery for a while before sending it (a lease, so a
node that dies mid-send frees it again), so each attempt is made by one node of a cluster.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Final

import sqlalchemy as sa

from openssm.store import outbox
from openssm.store.outbox import failed_attempt
from openssm.store.rows import Db, every, execute, scalars
from openssm.store.tables import access_webhook_deliveries

PENDING: Final = "pending"
DELIVERED: Final = "delivered"
FAILED: Final = "failed"  # given up on after the last attempt


@dataclasses.dataclass(frozen=True, slots=True)
class DeliveryRow:
    id: int
    delivery_id: str
    request_id: str
    event: str
    body: str
    status: str
    attempts: int
    next_attempt_at: dt.datetime
    claimed_by: str | None
    claimed_until: dt.datetime | None
    last_error: str | None
    created_at: dt.datetime
    delivered_at: dt.datetime | None


async def enqueue(
    db: Db, *, delivery_id: str, request_id: str, event: str, body: str, now: dt.datetime
) -> None:
    """A delivery, due at once."""
    await outbox.enqueue(
        db,
        access_webhook_deliveries,
        now=now,
        delivery_id=delivery_id,
        request_id=request_id,
        event=event,
        body=body,
        status=PENDING,
    )


def _unclaimed(now: dt.datetime) -> sa.ColumnElement[bool]:
    column = access_webhook_deliveries.c
    return sa.or_(column.claimed_until.is_(None), column.claimed_until <= now)


async def due(db: Db, *, now: dt.datetime, limit: int = 20) -> list[DeliveryRow]:
    """Pending deliveries that are due and that no node holds, oldest first."""
    column = access_webhook_deliveries.c
    statement = (
        sa.select(access_webhook_deliveries)
        .where(column.status == PENDING, column.next_attempt_at <= now, _unclaimed(now))
        .order_by(column.id)
        .limit(limit)
    )
    return await every(db, statement, DeliveryRow)


async def next_due(db: Db) -> dt.datetime | None:
    """When the next pending delivery may be tried (after its retry delay, and its claim if held)."""
    column = access_webhook_deliveries.c
    later = sa.case(
        (column.claimed_until > column.next_attempt_at, column.claimed_until), else_=column.next_attempt_at
    )
    query = sa.select(sa.func.min(sa.type_coerce(later, column.next_attempt_at.type))).where(
        column.status == PENDING
    )
    return next(iter(await scalars(db, query)), None)


async def claim(db: Db, row_id: int, *, node_id: str, now: dt.datetime, lease: dt.timedelta) -> bool:
    """Hold a due delivery for ``lease``; True for exactly one of the nodes that try at once."""
    column = access_webhook_deliveries.c
    statement = (
        sa.update(access_webhook_deliveries)
        .where(column.id == row_id, column.status == PENDING, column.next_attempt_at <= now, _unclaimed(now))
        .values(claimed_by=node_id, claimed_until=now + lease)
    )
    return await execute(db, statement) == 1


async def _attempt_over(db: Db, row_id: int, node_id: str, values: dict[str, object]) -> None:
    """The attempt ``node_id`` held ``row_id`` for is over: the row gets ``values`` and the claim is
    released (a row whose claim went to another node meanwhile is left alone)."""
    column = access_webhook_deliveries.c
    statement = (
        sa.update(access_webhook_deliveries)
        .where(column.id == row_id, column.claimed_by == node_id)
        .values(**values, claimed_by=None, claimed_until=None)
    )
    await execute(db, statement)


async def delivered(db: Db, row_id: int, *, node_id: str, now: dt.datetime) -> None:
    attempts = access_webhook_deliveries.c.attempts + 1
    values = {"status": DELIVERED, "attempts": attempts, "delivered_at": now, "last_error": None}
    await _attempt_over(db, row_id, node_id, values)


async def attempt_failed(
    db: Db, row_id: int, *, node_id: str, error: str, retry_at: dt.datetime | None
) -> None:
    """Count a failed attempt; retry at ``retry_at``, or (None) give up on the delivery."""
    values = failed_attempt(access_webhook_deliveries, error)
    if retry_at is None:
        values["status"] = FAILED
    else:
        values["next_attempt_at"] = retry_at
    await _attempt_over(db, row_id, node_id, values)


async def for_request(db: Db, request_id: str) -> list[DeliveryRow]:
    column = access_webhook_deliveries.c
    statement = (
        sa.select(access_webhook_deliveries).where(column.request_id == request_id).order_by(column.id)
    )
    return await every(db, statement, DeliveryRow)
