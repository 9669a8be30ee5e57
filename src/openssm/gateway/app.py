"""Wiring the message gateway into the server's aiohttp application."""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web

from openssm.gateway import sweeper
from openssm.gateway.extension import NodeExtension
from openssm.gateway.node import GatewayNode
from openssm.gateway.rest import make_handlers
from openssm.gateway.settings import GatewaySettings
from openssm.gateway.sockets import SocketHandlers
from openssm.services import Services

CONTROL_PATH = "/v1/control-channel/{instance_id}"
DATA_PATH = "/v1/data-channel/{session_id}"


def install(
    app: web.Application,
    services: Services,
    *,
    settings: GatewaySettings | None = None,
    extensions: Sequence[NodeExtension] = (),
) -> GatewayNode:
    """Add the MGS REST calls and channel WebSockets, and run the node (with its extensions) and the
    dead-node sweeper with the app. Returns the node."""
    settings = settings or GatewaySettings()
    node = GatewayNode(services, settings, extensions)
    create_control_channel, create_data_channel = make_handlers(services)
    sockets = SocketHandlers(node)
    app.router.add_post(CONTROL_PATH, create_control_channel)
    app.router.add_post(DATA_PATH, create_data_channel)
    app.router.add_get(CONTROL_PATH, sockets.control, allow_head=False)
    app.router.add_get(DATA_PATH, sockets.data, allow_head=False)

    async def start(_: web.Application) -> None:
        await node.start()

    async def shutdown(_: web.Application) -> None:
        # Before the server waits for open handlers: our WebSockets would otherwise hold it up.
        await node.shutdown()

    async def cleanup(_: web.Application) -> None:
        await node.cleanup()

    app.on_startup.append(start)
    app.on_shutdown.append(shutdown)
    app.on_cleanup.append(cleanup)
    # Scale-out: end the sessions of nodes that died (running ones after the resume window).
    sweeper.install(app, services, settings.heartbeat_interval, settings.resume_window)
    return node
