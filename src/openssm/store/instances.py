"""Managed nodes (``instances``): registered through an activation (``mi-…``) or joined with IAM
credentials as an EC2 instance does (``i-…``, on its first ``UpdateInstanceInformation``), reporting in
through ``UpdateInstanceInformation``, and holding a control channel on one gateway node at a time."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any, TypedDict, Unpack

import sqlalchemy as sa

from openssm.store import audit_log
from openssm.store.db import DatabaseBusy
from openssm.store.rows import Db, Tags, every, execute, first, writing
from openssm.store.tables import instances

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class InstanceRow:
    instance_id: str  # mi-<17 hex> (activation), i-<17 hex> (joined with IAM credentials)
    activation_id: str | None  # None: joined with IAM credentials
    iam_role: str | None
    name: str | None
    public_key: str  # base64 DER SubjectPublicKeyInfo ("" for nodes joined with IAM credentials)
    public_key_type: str
    fingerprint: str
    registration_date: dt.datetime
    computer_name: str | None
    ip_address: str | None
    platform_type: str | None
    platform_name: str | None
    platform_version: str | None
    agent_name: str | None
    agent_version: str | None
    last_ping_at: dt.datetime | None
    control_node_id: str | None  # the gateway node holding its control channel
    control_connected_at: dt.datetime | None
    tags: Tags
    deregistered: bool

    def ping_status(self, alive_nodes: Mapping[str, str]) -> str:
        """PingStatus: Online while its control channel is on a live gateway node."""
        if self.deregistered:
            return "Inactive"
        node = self.control_node_id
        return "Online" if node is not None and node in alive_nodes else "ConnectionLost"


@dataclasses.dataclass(frozen=True, slots=True)
class InstanceInfo:
    """What an agent reports about its node (UpdateInstanceInformation); None = not reported."""

    agent_name: str | None = None
    agent_version: str | None = None
    computer_name: str | None = None
    ip_address: str | None = None
    platform_name: str | None = None
    platform_type: str | None = None
    platform_version: str | None = None


class Registration(TypedDict):
    """A node registering through an activation (``RegisterManagedInstance``)."""

    instance_id: str
    activation_id: str
    iam_role: str
    name: str | None
    public_key: str  # base64 DER, RSA
    fingerprint: str


async def register(
    db: Db, *, tags: Mapping[str, str], now: dt.datetime, **registration: Unpack[Registration]
) -> None:
    statement = sa.insert(instances).values(
        **registration, public_key_type="Rsa", registration_date=now, tags=dict(tags)
    )
    await execute(db, statement)


async def join(db: Db, instance_id: str, *, iam_role: str | None, now: dt.datetime) -> bool:
    """A node joining with IAM credentials (no activation, no key pair); False if the id is taken
    (by another node, or by the same one racing itself)."""
    statement = sa.insert(instances).values(
        instance_id=instance_id,
        activation_id=None,
        iam_role=iam_role,
        public_key="",
        public_key_type="",
        fingerprint="",
        registration_date=now,
        tags={},
    )
    try:
        await execute(db, statement)
    except sa.exc.IntegrityError:
        return False
    return True


async def get(db: Db, instance_id: str) -> InstanceRow | None:
    return await first(db, sa.select(instances).where(instances.c.instance_id == instance_id), InstanceRow)


async def list_all(db: Db) -> list[InstanceRow]:
    return await every(db, sa.select(instances).order_by(instances.c.instance_id), InstanceRow)


# DescribeInstanceInformation's filter keys on a column, as the column's values are reported.
_COLUMN_FILTERS = {
    "InstanceIds": instances.c.instance_id,
    "AgentVersion": instances.c.agent_version,
    "PlatformTypes": instances.c.platform_type,
    "ActivationIds": instances.c.activation_id,
    "IamRole": instances.c.iam_role,
}
# What a tag key may hold (AWS's tag key pattern); a filter naming anything else matches no node.
_TAG_KEY = re.compile(r"^[\w.:/=+\-@ ]{1,128}$")


def _online(alive_nodes: Collection[str]) -> sa.ColumnElement[bool]:
    return sa.and_(instances.c.deregistered.is_(False), instances.c.control_node_id.in_(sorted(alive_nodes)))


def _ping_status(status: str, alive_nodes: Collection[str]) -> sa.ColumnElement[bool]:
    """The SQL twin of ``InstanceRow.ping_status``."""
    if status == "Inactive":
        return instances.c.deregistered.is_(True)
    if status == "Online":
        return _online(alive_nodes)
    if status == "ConnectionLost":
        node = instances.c.control_node_id
        lost = sa.or_(node.is_(None), node.not_in(sorted(alive_nodes)))
        return sa.and_(instances.c.deregistered.is_(False), lost)
    return sa.false()


def _tag(key: str) -> sa.ColumnElement[str]:
    tags: sa.ColumnElement[Any] = instances.c.tags
    value: sa.ColumnElement[str] = tags[key].as_string()  # SQLite json_extract, PostgreSQL ->>
    return value


def filter_condition(
    key: str, values: Collection[str], alive_nodes: Collection[str]
) -> sa.ColumnElement[bool]:
    """A DescribeInstanceInformation filter (``key`` one of its keys, ``tag:<key>`` or ``tag-key``)
    as SQL, so the database picks the page (nodes whose control channel is on one of
    ``alive_nodes`` are Online)."""
    wanted = sorted(values)
    if key in _COLUMN_FILTERS:
        return _COLUMN_FILTERS[key].in_(wanted)
    if key == "PingStatus":
        return sa.or_(*(_ping_status(status, alive_nodes) for status in wanted))
    if key == "ResourceType":
        prefixes = [{"ManagedInstance": "mi-", "EC2Instance": "i-"}.get(value) for value in wanted]
        return sa.or_(*(instances.c.instance_id.startswith(p) for p in prefixes if p), sa.false())
    if key.startswith("tag:"):
        name = key[4:]
        return _tag(name).in_(wanted) if _TAG_KEY.match(name) else sa.false()
    if key == "tag-key":
        return sa.or_(*(_tag(name).is_not(None) for name in wanted if _TAG_KEY.match(name)), sa.false())
    return sa.false()  # AssociationStatus: no node has associations


async def list_page(
    db: Db, conditions: Sequence[sa.ColumnElement[bool]], *, after: str | None, limit: int
) -> list[InstanceRow]:
    """At most ``limit`` nodes matching every condition, in ``instance_id`` order, after ``after``
    (keyset paging on the primary key: a page reads one page, not the whole fleet)."""
    query = sa.select(instances).where(*conditions)
    if after is not None:
        query = query.where(instances.c.instance_id > after)
    return await every(db, query.order_by(instances.c.instance_id).limit(limit), InstanceRow)


async def _update(db: Db, instance_id: str, values: Mapping[str, Any]) -> bool:
    return (
        await execute(db, sa.update(instances).where(instances.c.instance_id == instance_id).values(values))
        == 1
    )


async def record_ping(db: Db, instance_id: str, info: InstanceInfo, *, now: dt.datetime) -> None:
    reported = {key: value for key, value in dataclasses.asdict(info).items() if value is not None}
    await _update(db, instance_id, {**reported, "last_ping_at": now})


INFO_COLUMNS = tuple(field.name for field in dataclasses.fields(InstanceInfo))


@dataclasses.dataclass(frozen=True, slots=True)
class Ping:
    """A steady report, to be written with others: when, and what was reported (None: not reported)."""

    at: dt.datetime
    info: InstanceInfo = InstanceInfo()


async def record_pings(db: Db, pings: Mapping[str, Ping], audit: Sequence[Mapping[str, Any]] = ()) -> None:
    """Many nodes' reports in one transaction (one statement, executed for each), with the audit
    rows of the calls that made them. A reported field is written as well as the time (a node's
    earlier report elsewhere may have changed it), one not reported is left as it is."""
    if not pings and not audit:
        return
    values: dict[str, Any] = {"last_ping_at": sa.bindparam("pinged")}
    for column in INFO_COLUMNS:
        values[column] = sa.func.coalesce(sa.bindparam(f"reported_{column}"), instances.c[column])
    statement = sa.update(instances).where(instances.c.instance_id == sa.bindparam("node")).values(values)
    rows = [
        {
            "node": node,
            "pinged": ping.at,
            **{f"reported_{column}": getattr(ping.info, column) for column in INFO_COLUMNS},
        }
        for node, ping in pings.items()
    ]
    async with writing(db) as conn:
        if rows:
            await conn.execute(statement, rows)
        if audit:
            await audit_log.record_many(conn, audit)


class PingBuffer:
    """Reports of nodes that said nothing new, written together ``delay`` seconds after the first of
    them, with the audit rows of the calls that made them: a fleet's steady heartbeats (10,000 nodes
    every 5 minutes) cost one transaction every ``delay`` seconds instead of two each.
    LastPingDateTime is thus up to ``delay`` seconds late on every node; PingStatus does not depend on
    it (control channels do). A graceful stop writes what is buffered (``close``); what is still
    buffered when the process is killed is lost, audit rows of those calls included (the call's
    effect was lost with them): the next report writes its own."""

    def __init__(self, delay: float = 2.0) -> None:
        self.delay = delay
        self._pending: dict[str, Ping] = {}
        self._audit: list[Mapping[str, Any]] = []
        self._writer: asyncio.Task[None] | None = None  # collecting the next batch
        self._writing: set[asyncio.Task[None]] = set()  # every writer not yet done, flushing ones too

    def add(
        self,
        db: Db,
        instance_id: str,
        now: dt.datetime,
        info: InstanceInfo = InstanceInfo(),
        audit: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        self._pending[instance_id] = Ping(now, info)
        self._audit.extend(audit)
        if self._writer is None:
            self._write_soon(db)

    def discard(self, instance_id: str) -> None:
        """A newer report was written directly."""
        self._pending.pop(instance_id, None)

    def _write_soon(self, db: Db) -> None:
        writer = self._writer = asyncio.get_running_loop().create_task(self._write_later(db))
        self._writing.add(writer)
        writer.add_done_callback(self._writing.discard)

    async def _write_later(self, db: Db) -> None:
        try:
            await asyncio.sleep(self.delay)  # the batching window, not a wait for an event
        finally:
            self._writer = None
        await self.flush(db)

    async def written(self) -> None:
        """Wait until the batch being collected, and any being written, has been written (or, the
        database busy, put back into the next batch: that one is not waited for)."""
        if self._writing:
            await asyncio.shield(asyncio.gather(*self._writing))

    async def close(self, db: Db) -> None:
        """At shutdown: write what is buffered without waiting out the window, and wait for the
        batches already being written (a graceful stop loses no acknowledged report)."""
        if self._writer is not None:
            self._writer.cancel()  # still in its window: this flush writes its batch
        await self.flush(db)
        if self._writing:
            await asyncio.gather(*self._writing, return_exceptions=True)

    async def flush(self, db: Db) -> None:
        pending, self._pending = self._pending, {}
        audit, self._audit = self._audit, []
        try:
            await record_pings(db, pending, audit)
        except DatabaseBusy:
            # Acknowledged reports and their audit rows: into the next batch (a newer report wins).
            log.warning("database busy: the reports of %d nodes wait for the next batch", len(pending))
            self._pending = {**pending, **self._pending}
            self._audit[:0] = audit
            if self._writer is None:
                self._write_soon(db)
        except sa.exc.SQLAlchemyError:
            log.exception("could not write the reports of %d nodes (%d audit rows)", len(pending), len(audit))


async def set_public_key(db: Db, instance_id: str, public_key: str) -> None:
    await _update(db, instance_id, {"public_key": public_key, "public_key_type": "Rsa"})


async def set_tags(db: Db, instance_id: str, tags: Mapping[str, str]) -> None:
    await _update(db, instance_id, {"tags": dict(tags)})


async def deregister(db: Db, instance_id: str) -> None:
    await _update(db, instance_id, {"deregistered": True})


async def set_control_node(db: Db, instance_id: str, node_id: str, *, now: dt.datetime) -> None:
    """Its control channel is now on ``node_id``."""
    await _update(db, instance_id, {"control_node_id": node_id, "control_connected_at": now})


async def clear_control_node(
    db: Db, instance_id: str, node_id: str, *, connected_at: dt.datetime | None = None
) -> None:
    """Forget the control channel, unless another node has taken the instance over meanwhile, or
    (``connected_at``: when the channel that ended was opened) a newer channel of the instance has
    been opened since, on this node too (an agent reconnecting: the old channel's end must not wipe
    the new one's row)."""
    where = [instances.c.instance_id == instance_id, instances.c.control_node_id == node_id]
    if connected_at is not None:
        where.append(instances.c.control_connected_at == connected_at)
    await execute(db, sa.update(instances).where(*where).values(control_node_id=None))


async def clear_node_control_channels(db: Db, node_id: str) -> int:
    """A node lost every control channel it held (it restarted or is shutting down)."""
    statement = (
        sa.update(instances).where(instances.c.control_node_id == node_id).values(control_node_id=None)
    )
    return await execute(db, statement)
