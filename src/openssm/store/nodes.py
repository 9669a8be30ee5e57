"""Managed nodes (``instances``) and gateway-node liveness, as the API reads and writes them."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from openssm.store.tables import gateway_nodes, instances

# A gateway node refreshes last_seen_at every 10 s; one silent for this long is presumed dead.
NODE_ALIVE_WINDOW = dt.timedelta(seconds=30)

# Columns UpdateInstanceInformation may set, keyed by the API member name.
INFO_MEMBERS = {
    "AgentName": "agent_name",
    "AgentVersion": "agent_version",
    "ComputerName": "computer_name",
    "IPAddress": "ip_address",
    "PlatformName": "platform_name",
    "PlatformType": "platform_type",
    "PlatformVersion": "platform_version",
}


async def insert(engine: AsyncEngine, **values: Any) -> None:
    async with engine.begin() as conn:
        await conn.execute(sa.insert(instances).values(**values))


async def get(engine: AsyncEngine, instance_id: str) -> dict[str, Any] | None:
    async with engine.connect() as conn:
        row = (
            (await conn.execute(sa.select(instances).where(instances.c.instance_id == instance_id)))
            .mappings()
            .first()
        )
    return dict(row) if row is not None else None


async def list_all(engine: AsyncEngine) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(instances).order_by(instances.c.instance_id))).mappings().all()
    return [dict(row) for row in rows]


async def update(engine: AsyncEngine, instance_id: str, **values: Any) -> bool:
    async with engine.begin() as conn:
        result = await conn.execute(
            sa.update(instances).where(instances.c.instance_id == instance_id).values(**values)
        )
    return bool(result.rowcount)


async def alive_nodes(engine: AsyncEngine, now: dt.datetime) -> dict[str, str]:
    """node_id → public_url of the gateway nodes that reported in recently."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                sa.select(gateway_nodes.c.node_id, gateway_nodes.c.public_url).where(
                    gateway_nodes.c.last_seen_at > now - NODE_ALIVE_WINDOW
                )
            )
        ).all()
    return {node_id: url for node_id, url in rows}


def ping_status(instance: dict[str, Any], alive: dict[str, str]) -> str:
    if instance["deregistered"]:
        return "Inactive"
    node = instance["control_node_id"]
    return "Online" if node is not None and node in alive else "ConnectionLost"
