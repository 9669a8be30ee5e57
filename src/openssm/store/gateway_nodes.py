"""Gateway nodes (``gateway_nodes``): each node's public URL and heartbeat, so any node can tell which
nodes are alive (StreamUrls point only at live nodes; the sweeper ends the sessions of dead ones)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import sqlalchemy as sa

from openssm.store.rows import Db, execute, first, reading, scalars, writing
from openssm.store.tables import gateway_nodes

# A node refreshes last_seen_at every heartbeat (10 s); one silent for this long is presumed dead.
NODE_ALIVE_WINDOW = dt.timedelta(seconds=30)


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
        db, node_id, public_url, now, {"public_url": public_url, "started_at": now, "last_seen_at": now}
    )


async def heartbeat(
    db: Db, node_id: str, public_url: str, started_at: dt.datetime, *, now: dt.datetime
) -> None:
    """Refresh last_seen_at; re-create the row if someone removed it meanwhile."""
    await _refresh(db, node_id, public_url, started_at, {"last_seen_at": now})


async def get(db: Db, node_id: str) -> GatewayNodeRow | None:
    return await first(db, sa.select(gateway_nodes).where(gateway_nodes.c.node_id == node_id), GatewayNodeRow)


def _reported_since(now: dt.datetime) -> sa.ColumnElement[bool]:
    return gateway_nodes.c.last_seen_at > now - NODE_ALIVE_WINDOW


def alive_ids(now: dt.datetime) -> sa.Select[tuple[str]]:
    """The ids of the nodes that reported in recently (a subquery for other entities' queries)."""
    return sa.select(gateway_nodes.c.node_id).where(_reported_since(now))


async def alive(db: Db, *, now: dt.datetime) -> dict[str, str]:
    """node_id → public_url of the nodes that reported in recently."""
    query = sa.select(gateway_nodes.c.node_id, gateway_nodes.c.public_url).where(_reported_since(now))
    async with reading(db) as conn:
        return {node_id: url for node_id, url in (await conn.execute(query)).all()}


async def public_urls(db: Db) -> list[str]:
    """Every node's public URL, alive or not (the console's allowed origins)."""
    return [str(url) for url in await scalars(db, sa.select(gateway_nodes.c.public_url))]
