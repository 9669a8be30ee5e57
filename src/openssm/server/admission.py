"""How many connections a node takes, and the answer past that: slow down, never fail.

Every agent holds one connection (its control channel), so a node's agent capacity is its
open-files limit. At start the node raises its soft ``RLIMIT_NOFILE`` to the hard limit (the
common soft default of 1,024 would stop a fleet at about a thousand agents) and says how many
agents that allows. Past that (a reserve is kept for the database, logs and the bus), a new
control channel is answered with AWS's throttling error: HTTP 429 ``ThrottlingException`` on the
message gateway, and API calls are answered but their connections closed after the answer; at
the ceiling every request is throttled (``ThrottlingException``, HTTP 400, as the SSM API answers
"Rate exceeded"). Agents and SDKs back off with jitter and try again, or try another node.
Without this the process runs out of descriptors, and SQLite fails to open its file: HTTP 500s
and dropped control channels.

The database's connections are the other thing a wave runs out of: a request that waited the
pool's whole (short) wait for one (``store.db.PoolSettings``, ``DatabaseBusy``) is throttled the
same way, by the API's own error handling and, for the message gateway, here: never an HTTP 500.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import resource
from collections.abc import Awaitable, Callable
from typing import Final

from aiohttp import web

from openssm.store.db import DatabaseBusy

log = logging.getLogger(__name__)

RESERVE_FIXED: Final = 128  # database connections, log files, the bus, listeners, accepts in flight
RESERVE_FRACTION: Final = 0.1
CEILING_RESERVE: Final = 64
NEW_AGENT_PATHS: Final = ("/v1/control-channel/",)  # CreateControlChannel and its WebSocket
# Requests (not WebSockets) served at once: a wave of agents all calling together would otherwise
# queue on the database's few connections until the pool's timeout turned them into HTTP 500s.
MAX_IN_FLIGHT: Final = 128
MIN_CONNECTIONS: Final = 16
RETRY_AFTER_SECONDS: Final = (1, 10)  # a jittered Retry-After, so refused agents do not return together
THROTTLED_MESSAGE: Final = "Rate exceeded"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclasses.dataclass(frozen=True, slots=True)
class OpenFiles:
    before: int  # the soft limit the process started with
    soft: int  # the soft limit now
    hard: int


def raise_open_files_limit() -> OpenFiles:
    """Soft RLIMIT_NOFILE up to the hard limit (unprivileged processes may; no error if not)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-files limit from %d to %d: %s", soft, target, exc)
    return OpenFiles(soft, resource.getrlimit(resource.RLIMIT_NOFILE)[0], hard)


def connection_limit(soft: int) -> int:
    """Connections a node admits new agents up to with ``soft`` descriptors, keeping the reserve."""
    return max(MIN_CONNECTIONS, soft - RESERVE_FIXED - int(soft * RESERVE_FRACTION))


def connection_ceiling(soft: int) -> int:
    """Connections past which every request is throttled (what is left is the database's and the logs')."""
    return max(MIN_CONNECTIONS, soft - CEILING_RESERVE)


def throttled_response(request: web.Request) -> web.Response:
    """AWS's throttling answer in the shape of the API the request was for."""
    retry_after = str(random.randint(*RETRY_AFTER_SECONDS))
    headers = {"Retry-After": retry_after, "x-amzn-ErrorType": "ThrottlingException"}
    if request.path.startswith("/v1/"):  # the message gateway (CreateControlChannel, its WebSockets…)
        body = f"<ThrottlingException><Message>{THROTTLED_MESSAGE}</Message></ThrottlingException>"
        return web.Response(status=429, text=body, content_type="application/xml", headers=headers)
    if "X-Amz-Target" in request.headers:
        return web.json_response(
            {"__type": "ThrottlingException", "message": THROTTLED_MESSAGE},
            status=400,
            content_type="application/x-amz-json-1.1",
            headers=headers,
        )
    return web.Response(status=503, text=THROTTLED_MESSAGE + "\n", headers=headers)


class Admission:
    """Admits new agents (control channels) while the node holds fewer than ``limit`` connections;
    past that, answers API calls but closes their connections after the answer (an idle keep-alive
    connection is the cheapest descriptor to give back), and past ``ceiling`` throttles everything.
    At most ``max_in_flight`` requests are served at once; more are throttled at once, cheaply."""

    def __init__(self, limit: int, ceiling: int, max_in_flight: int = MAX_IN_FLIGHT) -> None:
        self.limit = limit
        self.ceiling = max(limit, ceiling)
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self.refused = 0
        self._connections: Callable[[], int] = lambda: 0

    def count_with(self, connections: Callable[[], int]) -> None:
        """How to count the node's open connections (the web server's, once it runs)."""
        self._connections = connections

    def _refuse(self, request: web.Request) -> web.Response:
        self.refused += 1
        if self.refused == 1 or self.refused % 1000 == 0:
            log.warning(
                "busy (%d connections, limit %d for new agents; %d requests in flight, limit %d): "
                "refused %d requests with ThrottlingException so far",
                self._connections(),
                self.limit,
                self.in_flight,
                self.max_in_flight,
                self.refused,
            )
        response = throttled_response(request)
        response.force_close()  # give the descriptor back at once
        return response

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._serve(request, handler)  # lives on: not a request in flight
        if self.in_flight >= self.max_in_flight:
            return self._refuse(request)
        self.in_flight += 1
        try:
            return await self._serve(request, handler)
        finally:
            self.in_flight -= 1

    async def _serve(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await self._admit(request, handler)
        except DatabaseBusy:  # the database's connections were all in use for the pool's whole wait
            if request.writer.output_size:  # answered already: a WebSocket past its upgrade ends
                raise
            return self._refuse(request)

    async def _admit(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        connections = self._connections()
        if connections <= self.limit:
            return await handler(request)
        if connections > self.ceiling or request.path.startswith(NEW_AGENT_PATHS):
            return self._refuse(request)
        response = await handler(request)
        if not isinstance(response, web.WebSocketResponse):
            response.force_close()
        return response


def admission_for(open_files: OpenFiles) -> Admission:
    admission = Admission(connection_limit(open_files.soft), connection_ceiling(open_files.soft))
    raised = (
        f"raised from {open_files.before} to {open_files.soft}"
        if open_files.soft > open_files.before
        else (
            f"{open_files.soft}, the hard limit"
            if open_files.soft >= open_files.hard
            else f"{open_files.soft}"
        )
    )
    log.info(
        "open files: soft limit %s (hard %d): room for about %d agents (one connection each); "
        "past that, new connections are answered with ThrottlingException",
        raised,
        open_files.hard,
        admission.limit,
    )
    return admission
