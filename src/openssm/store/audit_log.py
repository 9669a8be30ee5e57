"""The audit trail (``audit_log``): one row per authorisation decision, written by the authoriser, and
one per thing the server does by itself on a caller's behalf (a service event: attaching or removing
a just-in-time grant, ending a session when it expires); read through CloudTrail's ``LookupEvents``."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, NotRequired, TypedDict, Unpack

import sqlalchemy as sa

from openssm.store.rows import Db, JsonObject, every, execute, writing
from openssm.store.tables import audit_log

# Who a service event's row names: the server itself (CloudTrail's ``invokedBy`` of an AwsServiceEvent).
SERVICE_PRINCIPAL: Final = "openssm.amazonaws.com"
SERVICE_EVENT: Final = "serviceEvent"  # the decision column of a service event: nothing was decided


@dataclasses.dataclass(frozen=True, slots=True)
class AuditRow:
    id: int
    time: dt.datetime
    principal_arn: str
    action: str  # service:Action
    resource: str
    decision: str  # allowed | explicitDeny | implicitDeny
    matched_statement: str | None  # the statements that decided, described
    source_ip: str | None
    detail: JsonObject  # what was asked for, or what a service event did ({} when nothing was kept)

    @property
    def service_event(self) -> bool:
        return self.principal_arn == SERVICE_PRINCIPAL


class AuditEntry(TypedDict):
    principal_arn: str
    action: str
    resource: str
    decision: str
    matched_statement: str | None
    source_ip: str
    detail: NotRequired[dict[str, Any] | None]


async def record(db: Db, *, now: dt.datetime, **entry: Unpack[AuditEntry]) -> None:
    await execute(db, sa.insert(audit_log).values(time=now, **entry))


async def record_many(db: Db, rows: Sequence[Mapping[str, Any]]) -> None:
    """Several rows in one statement: each an :class:`AuditEntry` with its ``time``."""
    async with writing(db) as conn:
        await conn.execute(sa.insert(audit_log), list(rows))


async def record_service_event(
    db: Db, *, now: dt.datetime, action: str, resource: str, detail: dict[str, Any]
) -> None:
    """Something the server did by itself (``action`` as ``service:Action``, on ``resource``)."""
    await record(
        db,
        now=now,
        principal_arn=SERVICE_PRINCIPAL,
        action=action,
        resource=resource,
        decision=SERVICE_EVENT,
        matched_statement=None,
        source_ip=SERVICE_PRINCIPAL,  # as CloudTrail shows a service's own events
        detail=detail,
    )


@dataclasses.dataclass(frozen=True, slots=True)
class AuditQuery:
    """What to look up in the audit trail (newest first). ``before_id`` continues a listing."""

    start: dt.datetime | None = None
    end: dt.datetime | None = None
    event_id: int | None = None
    event_name: str | None = None  # the action without its service prefix, e.g. StartSession
    event_source: str | None = None  # the service prefix, e.g. ssm
    principal_name: str | None = None  # last path part of the principal ARN (user name, mi- id)
    resource: str | None = None
    before_id: int | None = None
    limit: int = 50


def _conditions(query: AuditQuery) -> list[sa.ColumnElement[bool]]:
    """One condition for each part of the query that is given."""
    column = audit_log.c
    wanted: list[tuple[Any, Callable[[Any], sa.ColumnElement[bool]]]] = [
        (query.start, lambda start: column.time >= start),
        (query.end, lambda end: column.time <= end),
        (query.event_id, lambda event_id: column.id == event_id),
        (query.event_name, lambda name: column.action.endswith(f":{name}", autoescape=True)),
        (query.event_source, lambda source: column.action.startswith(f"{source}:", autoescape=True)),
        (query.principal_name, lambda name: column.principal_arn.endswith(f"/{name}", autoescape=True)),
        (query.resource, lambda resource: column.resource == resource),
        (query.before_id, lambda before: column.id < before),
    ]
    return [condition(value) for value, condition in wanted if value is not None]


async def lookup(db: Db, query: AuditQuery) -> list[AuditRow]:
    """Audit rows matching ``query``, newest first, at most ``query.limit``."""
    statement = (
        sa.select(audit_log).where(*_conditions(query)).order_by(audit_log.c.id.desc()).limit(query.limit)
    )
    return await every(db, statement, AuditRow)


async def after(db: Db, after_id: int, *, limit: int) -> list[AuditRow]:
    """Rows after ``after_id``, oldest first, at most ``limit``: what the sealer looks at next."""
    statement = sa.select(audit_log).where(audit_log.c.id > after_id).order_by(audit_log.c.id).limit(limit)
    return await every(db, statement, AuditRow)


async def id_range(db: Db, first_id: int, last_id: int | None) -> list[AuditRow]:
    """Rows with ``first_id`` <= id (<= ``last_id``), oldest first: what a verifier checks."""
    condition = audit_log.c.id >= first_id
    if last_id is not None:
        condition = sa.and_(condition, audit_log.c.id <= last_id)
    return await every(db, sa.select(audit_log).where(condition).order_by(audit_log.c.id), AuditRow)
