"""Gateway nodes (``gateway_nodes``): each node's public URL and heartbeat, so any node can tell which
nodes are alive (StreamUrls point only at live nodes; the sweeper ends the sessions of dead ones).
A node always counts itself alive: every liveness question names the asking node.

Liveness needs no synchronised clocks: on a shared database (PostgreSQL) a heartbeat is stamped
with the database's own time, and "alive" is judged against the database's time too, so nodes
whose clocks disagree still agree on who is alive. The embedded database (SQLite) is one process
on one machine: its one clock is the server's (which tests can drive)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.visitors import InternalTraversal

from openssm.store.rows import Db, execute, first, reading, scalars, writing
from openssm.store.tables import UtcDateTime, gateway_nodes

# A node refreshes last_seen_at every heartbeat (GatewaySettings.heartbeat_interval, 3 s); one
# silent for this long is presumed dead: the failover blind spot.
NODE_ALIVE_WINDOW = dt.timedelta(seconds=10)


class _DatabaseTime(sa.sql.expression.ColumnElement[dt.datetime]):
    """The database's current time minus ``ago``; on SQLite, the server's ``now`` minus ``ago``."""

    inherit_cache = True
    type = UtcDateTime()
    # Both in the cache key: the bound time must be taken from each statement, not the first one.
    _traverse_internals = [
        ("now", InternalTraversal.dp_clauseelement),
        ("ago_ms", InternalTraversal.dp_plain_obj),
    ]

    def __init__(self, now: dt.datetime, ago: dt.timedelta = dt.timedelta(0)) -> None:
        self.now = sa.bindparam("db_time_fallback", now - ago, type_=UtcDateTime(), unique=True)
        self.ago_ms = int(ago.total_seconds() * 1000)


@compiles(_DatabaseTime)
def _server_time(element: _DatabaseTime, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.now, **kw)


@compiles(_DatabaseTime, "postgresql")
def _postgres_time(element: _DatabaseTime, compiler: SQLCompiler, **kw: Any) -> str:
    # clock_timestamp(): the time now, not the transaction's start. ago_ms is an int of ours.
    return f"(clock_timestamp() - interval '{int(element.ago_ms)} milliseconds')"


@dataclasses.dataclass(frozen=True, slots=True)
class GatewayNodeRow:
    node_id: str
    public_url: str
    started_at: dt.datetime
    last_seen_at: dt.datetime


async def _refresh(
    db: Db, node_id: str, public_url: str, started_at: dt.datetime, values: dict[str, Any]
) -> None:
    """Update the node's row, or create it if there is none (it was never there, or was removed)."""
    async with writing(db) as conn:
        if not await execute(
            conn, sa.update(gateway_nodes).where(gateway_nodes.c.node_id == node_id).values(values)
        ):
            await conn.execute(
                sa.insert(gateway_nodes).values(
                    node_id=node_id,
                    public_url=public_url,
                    started_at=started_at,
                    last_seen_at=values["last_seen_at"],
                )
            )


async def announce(db: Db, node_id: str, public_url: str, *, now: dt.datetime) -> None:
    """A node has just started: its URL, started_at and last_seen_at are now."""
    await _refresh(
        db,
        node_id,
        public_url,
        now,
        {"public_url": public_url, "started_at": now, "last_seen_at": _DatabaseTime(now)},
    )


async def heartbeat(
    db: Db, node_id: str, public_url: str, started_at: dt.datetime, *, now: dt.datetime
) -> None:
    """Refresh last_seen_at; re-create the row if someone removed it meanwhile."""
    await _refresh(db, node_id, public_url, started_at, {"last_seen_at": _DatabaseTime(now)})


async def get(db: Db, node_id: str) -> GatewayNodeRow | None:
    return await first(db, sa.select(gateway_nodes).where(gateway_nodes.c.node_id == node_id), GatewayNodeRow)


def _alive(
    now: dt.datetime, own_node: str, dead_for: dt.timedelta = dt.timedelta(0)
) -> sa.ColumnElement[bool]:
    # The asking node is alive, whatever its last heartbeat says (it is asking): on a machine so
    # loaded that its heartbeat write comes more than the window late, it refused sessions to its
    # own agents (TargetNotConnected), showed them ConnectionLost and swept its own sessions.
    return sa.or_(
        gateway_nodes.c.last_seen_at > _DatabaseTime(now, NODE_ALIVE_WINDOW + dead_for),
        gateway_nodes.c.node_id == own_node,
    )


def alive_ids(
    now: dt.datetime, *, own_node: str, dead_for: dt.timedelta = dt.timedelta(0)
) -> sa.Select[tuple[str]]:
    """The ids of the nodes that reported in recently, and ``own_node``'s (the asking node's, if it
    has a row): a subquery for other entities' queries.

    ``dead_for``: count a node as alive until it has also been dead this long (a grace such as the
    resume window). It is a duration, not an earlier ``now``: on PostgreSQL the time is the
    database's, which a shifted ``now`` would not move."""
    return sa.select(gateway_nodes.c.node_id).where(_alive(now, own_node, dead_for))


async def alive(db: Db, *, now: dt.datetime, own_node: str) -> dict[str, str]:
    """node_id → public_url of the nodes that reported in recently, and of ``own_node`` (the
    asking node: alive while it asks, however late its own heartbeat is)."""
    query = sa.select(gateway_nodes.c.node_id, gateway_nodes.c.public_url).where(_alive(now, own_node))
    async with reading(db) as conn:
        return {node_id: url for node_id, url in (await conn.execute(query)).all()}


async def public_urls(db: Db) -> list[str]:
    """Every node's public URL, alive or not (the console's allowed origins)."""
    return [str(url) for url in await scalars(db, sa.select(gateway_nodes.c.public_url))]
