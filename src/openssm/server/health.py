"""``/healthz`` and ``/readyz`` on the main listener, for load balancers and orchestrators.

- ``/healthz``: the process is serving HTTP (200 ``ok``), nothing else is looked at;
- ``/readyz``: this node can do its work: the database answers and its schema is at the newest
  migration, and the bus (Redis, in scale-out) answers; 503 ``not ready`` otherwise, and while
  the node shuts down (so a load balancer stops sending it requests first).

Neither needs authentication, and neither body says more than ``ok`` / ``not ready``: why a node
is not ready goes to the server's log (once, when its readiness changes), not to whoever asks.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from aiohttp import web

from openssm.services import Services
from openssm.store.db import schema_is_current

log = logging.getLogger(__name__)

HEALTH_PATH: Final = "/healthz"
READY_PATH: Final = "/readyz"
CHECK_TIMEOUT: Final = 5.0  # seconds for all checks together; a hung database is not ready
_HEADERS: Final = {"Cache-Control": "no-store"}


class Readiness:
    def __init__(self, services: Services) -> None:
        self.services = services
        self._last_problem: str | None = None
        self._checked = False

    async def problem(self) -> str | None:
        """Why this node is not ready, or None."""
        if self.services.stopping.is_set():
            return "the server is shutting down"
        try:
            async with asyncio.timeout(CHECK_TIMEOUT):
                try:
                    if not await schema_is_current(self.services.engine):
                        return "the database schema is not at the newest migration"
                except Exception as exc:
                    return f"the database does not answer: {type(exc).__name__}: {exc}"
                try:
                    if not await self.services.bus.ping():
                        return "the bus does not answer"
                except Exception as exc:
                    return f"the bus does not answer: {type(exc).__name__}: {exc}"
        except TimeoutError:
            return f"readiness checks took longer than {CHECK_TIMEOUT:.0f}s"
        return None

    async def ready(self, _: web.Request) -> web.Response:
        problem = await self.problem()
        if problem != self._last_problem or not self._checked:
            if problem is not None:
                log.warning("not ready: %s", problem[:500])
            elif self._checked:
                log.info("ready again")
            self._last_problem, self._checked = problem, True
        if problem is None:
            return web.Response(text="ok\n", headers=_HEADERS)
        return web.Response(status=503, text="not ready\n", headers=_HEADERS)


async def healthy(_: web.Request) -> web.Response:
    return web.Response(text="ok\n", headers=_HEADERS)


def install(app: web.Application, services: Services) -> None:
    readiness = Readiness(services)
    app.router.add_get(HEALTH_PATH, healthy)
    app.router.add_get(READY_PATH, readiness.ready)
