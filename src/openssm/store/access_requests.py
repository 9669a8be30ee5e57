"""Just-in-time access requests (``access_requests``): created by the requester, decided by an approver,
ended by revocation or by the clock. Every change of status is a compare-and-set on the status the
caller saw, so two approvers, or two server nodes expiring the same grant, cannot both act: exactly one
``UPDATE`` touches the row and the others find it already moved on.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from typing import Annotated, Any, Final, TypedDict, Unpack

import sqlalchemy as sa

from openssm.store.rows import Convert, Db, every, execute, first, scalars
from openssm.store.tables import access_requests

REASON_CHARS: Final = 1024
END_REASON_CHARS: Final = 256


class AccessStatus(enum.StrEnum):
    PENDING = "Pending"
    APPROVED = "Approved"
    DENIED = "Denied"
    REVOKED = "Revoked"
    EXPIRED = "Expired"


class NewAccessRequest(TypedDict):
    request_id: str
    requester_arn: str
    requester_name: str
    requester_user_id: str
    grant_holder_type: str  # user | role
    grant_holder_name: str
    target: str
    document_name: str
    duration_seconds: int
    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class AccessRequestRow:
    request_id: str
    requester_arn: str
    requester_name: str
    requester_user_id: str
    grant_holder_type: str
    grant_holder_name: str
    target: str
    document_name: str
    duration_seconds: int
    reason: str
    status: Annotated[AccessStatus, Convert(AccessStatus)]
    created_at: dt.datetime
    pending_until: dt.datetime
    decided_at: dt.datetime | None
    decider_arn: str | None
    decider_name: str | None
    decision_reason: str | None
    expires_at: dt.datetime | None  # the end of the grant, once approved
    ended_at: dt.datetime | None
    ended_by_arn: str | None
    end_reason: str | None

    @property
    def was_granted(self) -> bool:
        return self.expires_at is not None


@dataclasses.dataclass(frozen=True, slots=True)
class AccessQuery:
    """Which requests to list (newest first); each part given narrows it. ``before`` continues a list."""

    requester_name: str | None = None
    requester_arn: str | None = None
    status: AccessStatus | None = None
    target: str | None = None
    request_id: str | None = None
    before: tuple[dt.datetime, str] | None = None  # (created_at, request_id) of the last one seen
    limit: int = 50


async def create(
    db: Db, *, now: dt.datetime, pending_until: dt.datetime, **request: Unpack[NewAccessRequest]
) -> AccessRequestRow:
    values = {**request, "reason": request["reason"][:REASON_CHARS]}
    statement = sa.insert(access_requests).values(
        **values, status=AccessStatus.PENDING, created_at=now, pending_until=pending_until
    )
    await execute(db, statement)
    created = await get(db, request["request_id"])
    assert created is not None
    return created


async def get(db: Db, request_id: str) -> AccessRequestRow | None:
    query = sa.select(access_requests).where(access_requests.c.request_id == request_id)
    return await first(db, query, AccessRequestRow)


async def listing(db: Db, query: AccessQuery) -> list[AccessRequestRow]:
    column = access_requests.c
    wanted: list[tuple[Any, Any]] = [
        (query.requester_name, column.requester_name),
        (query.requester_arn, column.requester_arn),
        (query.status, column.status),
        (query.target, column.target),
        (query.request_id, column.request_id),
    ]
    conditions = [column_ == value for value, column_ in wanted if value is not None]
    if query.before is not None:
        created, request_id = query.before
        conditions.append(
            sa.or_(
                column.created_at < created,
                sa.and_(column.created_at == created, column.request_id < request_id),
            )
        )
    statement = (
        sa.select(access_requests)
        .where(*conditions)
        .order_by(column.created_at.desc(), column.request_id.desc())
        .limit(query.limit)
    )
    return await every(db, statement, AccessRequestRow)


def _moving(request_id: str, status: AccessStatus, *more: sa.ColumnElement[bool]) -> sa.Update:
    """An UPDATE of the request that happens only if it is still in ``status`` (and ``more`` holds)."""
    return sa.update(access_requests).where(
        access_requests.c.request_id == request_id, access_requests.c.status == status, *more
    )


async def decide(
    db: Db,
    request_id: str,
    decision: AccessStatus,
    *,
    decider_arn: str,
    decider_name: str,
    reason: str | None,
    now: dt.datetime,
    expires_at: dt.datetime | None = None,
) -> bool:
    """Pending (and not lapsed) → Approved, the grant running from ``now`` until ``expires_at``; or
    Pending → Denied. False if the request was no longer pending."""
    values: dict[str, Any] = {
        "status": decision,
        "decided_at": now,
        "decider_arn": decider_arn,
        "decider_name": decider_name,
        "decision_reason": reason[:REASON_CHARS] if reason else None,
    }
    if decision == AccessStatus.APPROVED:
        assert expires_at is not None
        values["expires_at"] = expires_at
    else:
        values["ended_at"] = now
    statement = _moving(request_id, AccessStatus.PENDING, access_requests.c.pending_until > now)
    return await execute(db, statement.values(**values)) == 1


async def revoke(
    db: Db, request_id: str, *, by_arn: str, reason: str, now: dt.datetime
) -> AccessStatus | None:
    """Approved or Pending → Revoked; the status it had (None: it had already ended)."""
    for status in (AccessStatus.APPROVED, AccessStatus.PENDING):
        statement = _moving(request_id, status).values(
            status=AccessStatus.REVOKED,
            ended_at=now,
            ended_by_arn=by_arn,
            end_reason=reason[:END_REASON_CHARS],
        )
        if await execute(db, statement) == 1:
            return status
    return None


async def expire(db: Db, request: AccessRequestRow, *, reason: str, now: dt.datetime) -> bool:
    """A grant whose time is up, or a request nobody decided in time → Expired. True for exactly one
    caller (the node that claims the expiry does what it entails)."""
    column = access_requests.c
    if request.status == AccessStatus.APPROVED:
        due = column.expires_at <= now
    else:
        due = column.pending_until <= now
    statement = _moving(request.request_id, request.status, due).values(
        status=AccessStatus.EXPIRED, ended_at=now, end_reason=reason[:END_REASON_CHARS]
    )
    return await execute(db, statement) == 1


def _approved_due(now: dt.datetime) -> sa.ColumnElement[bool]:
    column = access_requests.c
    return sa.and_(column.status == AccessStatus.APPROVED, column.expires_at <= now)


def _pending_due(now: dt.datetime) -> sa.ColumnElement[bool]:
    column = access_requests.c
    return sa.and_(column.status == AccessStatus.PENDING, column.pending_until <= now)


async def due(db: Db, *, now: dt.datetime, limit: int = 100) -> list[AccessRequestRow]:
    """Grants whose time is up and requests left undecided too long, earliest first."""
    column = access_requests.c
    statement = (
        sa.select(access_requests)
        .where(sa.or_(_approved_due(now), _pending_due(now)))
        .order_by(column.created_at)
        .limit(limit)
    )
    return await every(db, statement, AccessRequestRow)


async def next_due(db: Db) -> dt.datetime | None:
    """When the next grant ends or the next pending request lapses (None: nothing is waiting)."""
    column = access_requests.c
    grants = sa.select(sa.func.min(column.expires_at)).where(column.status == AccessStatus.APPROVED)
    pending = sa.select(sa.func.min(column.pending_until)).where(column.status == AccessStatus.PENDING)
    moments = [moment for query in (grants, pending) for moment in await scalars(db, query) if moment]
    return min(moments, default=None)


async def grants_ended_since(db: Db, since: dt.datetime) -> list[AccessRequestRow]:
    """Grants (approved requests) that expired or were revoked at or after ``since``."""
    column = access_requests.c
    statement = sa.select(access_requests).where(
        column.status.in_((AccessStatus.EXPIRED, AccessStatus.REVOKED)),
        column.expires_at.is_not(None),
        column.ended_at >= since,
    )
    return await every(db, statement, AccessRequestRow)


async def live_grants(db: Db, requester_arn: str, target: str, *, now: dt.datetime) -> list[AccessRequestRow]:
    """The requester's grants on ``target`` that are still running."""
    column = access_requests.c
    statement = sa.select(access_requests).where(
        column.requester_arn == requester_arn,
        column.target == target,
        column.status == AccessStatus.APPROVED,
        column.expires_at > now,
    )
    return await every(db, statement, AccessRequestRow)
