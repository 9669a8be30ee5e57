"""One node's aiohttp application, composed from the server-side components by static imports.

This is the one place that knows which components a node runs and how they are wired: each gets
the shared :class:`~openssm.services.Services`, and the gateway node gets its extensions
(``openssm.gateway.extension``) here, by constructor arguments.
"""

from __future__ import annotations

import dataclasses

from aiohttp import web

from openssm.api import app as api_app
from openssm.api.access import tasks as access_tasks
from openssm.console import app as console_app
from openssm.gateway import app as gateway_app
from openssm.gateway.jobs import RunCommandJobs
from openssm.gateway.join import SessionJoins
from openssm.gateway.metrics import GatewayMetrics
from openssm.gateway.node import GatewayNode
from openssm.gateway.settings import GatewaySettings
from openssm.logs import integrity
from openssm.logs.service import SessionLogging
from openssm.ops import requestid
from openssm.server import health
from openssm.services import Services
from openssm.store import log_uploads


@dataclasses.dataclass(frozen=True, slots=True)
class Server:
    """A composed node: its application (which runs everything below with it) and its parts."""

    app: web.Application
    services: Services
    gateway: GatewayNode


def compose(services: Services) -> Server:
    app = web.Application(client_max_size=api_app.MAX_BODY_BYTES)

    async def stopping(_: web.Application) -> None:
        services.stopping.set()

    app.on_shutdown.append(stopping)  # first: long polls answer before the gateway closes its sockets
    requestid.install(app)  # every response's x-amzn-RequestId, and the id in the logs
    api_app.install(app, services)  # POST /: the SSM, IAM, STS and CloudTrail APIs
    gateway = gateway_app.install(  # /v1/control-channel, /v1/data-channel: ssmmessages
        app,
        services,
        settings=GatewaySettings(resume_window=services.config.resume_window_seconds),
        extensions=(
            RunCommandJobs(services),
            SessionLogging(services),
            GatewayMetrics(services.metrics),
            SessionJoins(services.engine),
        ),
    )
    console_app.install(app, services)  # /console/
    access_tasks.install(app, services)  # just-in-time grants ended on time; the access webhook
    health.install(app, services)  # /healthz, /readyz
    integrity.install(app, services)  # signed digests of the audit trail and session recordings

    async def log_upload_backlog() -> None:
        count = await log_uploads.backlog(services.engine, services.config.node_id)
        services.metrics.log_upload_backlog.set(count)

    services.metrics.add_refresher(log_upload_backlog)  # read when /metrics is scraped
    return Server(app, services, gateway)
