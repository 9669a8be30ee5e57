"""Closing what a dead gateway node left behind (scale-out).

A node that crashes cannot end its own sessions: their sockets died with it, but their rows
still say Connecting/Connected. Every live node periodically marks Terminated the active
sessions of nodes that have not refreshed ``gateway_nodes.last_seen_at`` within the liveness
window (or have no row at all). Several nodes may sweep at once: ``finish_node_sessions`` only
touches sessions that are still active, so each session ends once.

Sessions that were running (Connected, Disconnected) get the resume window first: when both
their ends re-dial, a surviving node takes them over (``GatewayNode.join_client/join_agent``,
ResumeSession) and they are the dead node's no longer. Sessions never opened, or being
terminated, have no ends to come back and end as soon as the node is found dead.

Control channels of a dead node are left alone: PingStatus already reads ConnectionLost for an
instance whose node is not alive, and the agent's reconnect to another node overwrites them.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from typing import Final

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from openssm.clock import Clock
from openssm.protocol.session_status import ACTIVE_STATUSES, SessionStatus
from openssm.services import Services
from openssm.store import gateway_nodes, sessions

log = logging.getLogger(__name__)

SWEEPER_KEY: Final = web.AppKey("gateway_sweeper", asyncio.Task[None])


def dead_node_reason(node_id: str) -> str:
    return f"Gateway node {node_id} stopped responding"


# Sessions whose ends may re-dial to another node, and those that nobody will pick up again.
RESUMABLE: Final = (SessionStatus.CONNECTED, SessionStatus.DISCONNECTED)
UNRESUMABLE: Final = (SessionStatus.CONNECTING, SessionStatus.TERMINATING)


async def dead_nodes_with_sessions(
    engine: AsyncEngine,
    *,
    now: dt.datetime,
    own_node: str,
    statuses: tuple[SessionStatus, ...] = ACTIVE_STATUSES,
    dead_for: dt.timedelta = dt.timedelta(0),
) -> list[str]:
    """Nodes that carry sessions in ``statuses`` but have not reported within the liveness window
    (and ``dead_for`` more); never ``own_node``, the node asking (``gateway_nodes.alive_ids``)."""
    return await sessions.nodes_with_active_sessions(
        engine,
        except_nodes=gateway_nodes.alive_ids(now, own_node=own_node, dead_for=dead_for),
        statuses=statuses,
    )


async def sweep_dead_nodes(
    engine: AsyncEngine,
    *,
    now: dt.datetime,
    own_node: str,
    resume_window: dt.timedelta = dt.timedelta(0),
) -> int:
    """Terminate the sessions of dead nodes (running ones once the node has been dead for
    ``resume_window`` as well), never those of ``own_node``, the sweeping node; returns how many
    this call ended."""
    ended = 0
    for statuses, dead_for in ((UNRESUMABLE, dt.timedelta(0)), (RESUMABLE, resume_window)):
        for node_id in await dead_nodes_with_sessions(
            engine, now=now, own_node=own_node, statuses=statuses, dead_for=dead_for
        ):
            count = await sessions.finish_node_sessions(
                engine, node_id, reason=dead_node_reason(node_id), now=now, statuses=statuses
            )
            if count:
                log.warning("gateway node %s is not responding: ended %d of its sessions", node_id, count)
            ended += count
    return ended


async def run_sweeper(
    engine: AsyncEngine,
    interval: float,
    clock: Clock,
    own_node: str,
    resume_window: dt.timedelta = dt.timedelta(0),
) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await sweep_dead_nodes(engine, now=clock.now(), resume_window=resume_window, own_node=own_node)
        except Exception:  # the database may be briefly away; try again next round
            log.exception("sweeping dead gateway nodes failed")


def install(app: web.Application, services: Services, interval: float, resume_window: float = 0.0) -> None:
    """Sweep every ``interval`` seconds (the gateway's heartbeat interval) while the application runs."""

    async def start(app: web.Application) -> None:
        app[SWEEPER_KEY] = asyncio.create_task(
            run_sweeper(
                services.engine,
                interval,
                services.clock,
                services.config.node_id,
                dt.timedelta(seconds=resume_window),
            ),
            name="gateway-sweeper",
        )

    async def stop(app: web.Application) -> None:
        task = app[SWEEPER_KEY]
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
