"""Closing what a dead gateway node left behind (scale-out).

A node that crashes cannot end its own sessions: their sockets died with it, but their rows
still say Connecting/Connected. Every live node periodically marks Terminated the active
sessions of nodes that have not refreshed ``gateway_nodes.last_seen_at`` within the liveness
window (or have no row at all). Several nodes may sweep at once: ``finish_node_sessions`` only
touches sessions that are still active, so each session ends once.

Control channels of a dead node are left alone: PingStatus already reads ConnectionLost for an
instance whose node is not alive, and the agent's reconnect to another node overwrites them.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from typing import Final

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from openssm.gateway.settings import gateway_settings
from openssm.protocol.session_status import FINAL_STATUSES
from openssm.services import Services
from openssm.store import channels as store
from openssm.store.nodes import NODE_ALIVE_WINDOW
from openssm.store.tables import gateway_nodes, sessions

log = logging.getLogger(__name__)

SWEEPER_KEY: Final = web.AppKey("gateway_sweeper", asyncio.Task[None])


def dead_node_reason(node_id: str) -> str:
    return f"Gateway node {node_id} stopped responding"


async def dead_nodes_with_sessions(engine: AsyncEngine, *, now: dt.datetime) -> list[str]:
    """Nodes that carry active sessions but have not reported within the liveness window."""
    alive = sa.select(gateway_nodes.c.node_id).where(gateway_nodes.c.last_seen_at > now - NODE_ALIVE_WINDOW)
    query = (
        sa.select(sessions.c.node_id)
        .where(
            sessions.c.node_id.is_not(None),
            sessions.c.status.not_in(FINAL_STATUSES),
            sessions.c.node_id.not_in(alive),
        )
        .distinct()
    )
    async with engine.connect() as conn:
        return [str(node_id) for node_id in (await conn.execute(query)).scalars()]


async def sweep_dead_nodes(engine: AsyncEngine, *, now: dt.datetime | None = None) -> int:
    """Terminate the sessions of dead nodes; returns how many this call ended."""
    moment = now or store.utcnow()
    ended = 0
    for node_id in await dead_nodes_with_sessions(engine, now=moment):
        count = await store.finish_node_sessions(engine, node_id, reason=dead_node_reason(node_id))
        if count:
            log.warning("gateway node %s is not responding: ended %d of its sessions", node_id, count)
        ended += count
    return ended


async def run_sweeper(engine: AsyncEngine, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await sweep_dead_nodes(engine)
        except Exception:  # the database may be briefly away; try again next round
            log.exception("sweeping dead gateway nodes failed")


def install(app: web.Application, services: Services) -> None:
    """Sweep every gateway heartbeat interval while the application runs."""
    interval = gateway_settings(services.extras).heartbeat_interval

    async def start(app: web.Application) -> None:
        app[SWEEPER_KEY] = asyncio.create_task(run_sweeper(services.engine, interval), name="gateway-sweeper")

    async def stop(app: web.Application) -> None:
        task = app[SWEEPER_KEY]
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
