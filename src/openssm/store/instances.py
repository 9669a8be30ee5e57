"""Managed nodes (``instances``): registered through an activation (``mi-…``) or joined with IAM
credentials as an EC2 instance does (``i-…``, on its first ``UpdateInstanceInformation``), reporting in
through ``UpdateInstanceInformation``, and holding a control channel on one gateway node at a time."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Any, TypedDict, Unpack

import sqlalchemy as sa

from openssm.store.rows import Db, Tags, every, execute, first
from openssm.store.tables import instances


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


def ping_status_is(status: str, alive_node_ids: sa.Select[tuple[str]]) -> sa.ColumnElement[bool]:
    """SQL for ``InstanceRow.ping_status(...) == status``, with the live nodes as a subquery."""
    on_live_node = instances.c.control_node_id.in_(alive_node_ids)
    if status == "Inactive":
        return instances.c.deregistered.is_(True)
    if status == "Online":
        return sa.and_(instances.c.deregistered.is_(False), on_live_node)
    if status == "ConnectionLost":
        return sa.and_(
            instances.c.deregistered.is_(False),
            sa.or_(instances.c.control_node_id.is_(None), sa.not_(on_live_node)),
        )
    return sa.false()


# Filters that are columns of their own (the rest are matched on the shaped row, or the tags).
INSTANCE_COLUMN_FILTERS = {
    "InstanceIds": instances.c.instance_id,
    "AgentVersion": instances.c.agent_version,
    "PlatformTypes": instances.c.platform_type,
    "ActivationIds": instances.c.activation_id,
    "IamRole": instances.c.iam_role,
}


def sql_filters(
    filters: list[tuple[str, set[str]]], alive_node_ids: sa.Select[tuple[str]]
) -> tuple[list[sa.ColumnElement[bool]], list[tuple[str, set[str]]]]:
    """DescribeInstanceInformation's filters as SQL conditions (on indexed columns), and those left
    to match row by row (tags: a JSON column no index covers portably)."""
    conditions: list[sa.ColumnElement[bool]] = []
    remaining: list[tuple[str, set[str]]] = []
    for key, values in filters:
        if key in INSTANCE_COLUMN_FILTERS:
            conditions.append(INSTANCE_COLUMN_FILTERS[key].in_(sorted(values)))
        elif key == "PingStatus":
            conditions.append(sa.or_(*(ping_status_is(value, alive_node_ids) for value in sorted(values))))
        elif key == "ResourceType":
            kinds = [instances.c.instance_id.like("mi-%")] if "ManagedInstance" in values else []
            if "EC2Instance" in values:
                kinds.append(instances.c.instance_id.like("i-%"))
            conditions.append(sa.or_(sa.false(), *kinds))
        elif key == "AssociationStatus":
            conditions.append(sa.false())  # OpenSSM runs no associations: no node has a status
        else:
            remaining.append((key, values))
    return conditions, remaining


async def page_after(
    db: Db, after: str | None, conditions: list[sa.ColumnElement[bool]], limit: int | None
) -> list[InstanceRow]:
    """Instances matching every condition, in instance-id order, after ``after`` (keyset paging on
    the primary key: a page reads its rows, not the whole table); at most ``limit`` (None: all)."""
    query = sa.select(instances).where(*conditions).order_by(instances.c.instance_id)
    if after is not None:
        query = query.where(instances.c.instance_id > after)
    if limit is not None:
        query = query.limit(limit)
    return await every(db, query, InstanceRow)


async def _update(db: Db, instance_id: str, values: Mapping[str, Any]) -> bool:
    return (
        await execute(db, sa.update(instances).where(instances.c.instance_id == instance_id).values(values))
        == 1
    )


async def record_ping(db: Db, instance_id: str, info: InstanceInfo, *, now: dt.datetime) -> None:
    reported = {key: value for key, value in dataclasses.asdict(info).items() if value is not None}
    await _update(db, instance_id, {**reported, "last_ping_at": now})


async def set_public_key(db: Db, instance_id: str, public_key: str) -> None:
    await _update(db, instance_id, {"public_key": public_key, "public_key_type": "Rsa"})


async def set_tags(db: Db, instance_id: str, tags: Mapping[str, str]) -> None:
    await _update(db, instance_id, {"tags": dict(tags)})


async def deregister(db: Db, instance_id: str) -> None:
    await _update(db, instance_id, {"deregistered": True})


async def set_control_node(db: Db, instance_id: str, node_id: str, *, now: dt.datetime) -> None:
    """Its control channel is now on ``node_id``."""
    await _update(db, instance_id, {"control_node_id": node_id, "control_connected_at": now})


async def clear_control_node(db: Db, instance_id: str, node_id: str) -> None:
    """Forget the control channel, unless another node has taken the instance over meanwhile."""
    await execute(
        db,
        sa.update(instances)
        .where(instances.c.instance_id == instance_id, instances.c.control_node_id == node_id)
        .values(control_node_id=None),
    )


async def clear_node_control_channels(db: Db, node_id: str) -> int:
    """A node lost every control channel it held (it restarted or is shutting down)."""
    statement = (
        sa.update(instances).where(instances.c.control_node_id == node_id).values(control_node_id=None)
    )
    return await execute(db, statement)
