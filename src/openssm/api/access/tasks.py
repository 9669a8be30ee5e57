"""The access tasks of one server node: ending grants when their time is up (and the requesters'
sessions with them), and sending the webhook's deliveries. Every node runs both; the store decides
which node takes each step (compare-and-set on the request, a claim on each delivery), so in a
cluster exactly one node acts on each expiry and each delivery attempt.

Both tasks sleep until the next thing falls due by the one clock (``Services.clock``), or until a
node says on the bus that something changed (a new grant, a new delivery), and at most
``AccessSettings.poll_seconds``: so a grant ends on time without any request coming in, and a test
with a ``ManualClock`` sees it end as soon as it moves the clock past the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from typing import Final

import aiohttp
from aiohttp import web

from openssm.api.access import lifecycle, vocabulary
from openssm.api.access.webhook import Deliverer
from openssm.services import Services
from openssm.store import access_requests, access_webhooks

log = logging.getLogger(__name__)

BUS_RETRY_SECONDS: Final = 5.0
MIN_SLEEP: Final = 0.05  # seconds: never spin


class AccessTasks:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.poll = max(services.config.access.poll_seconds, MIN_SLEEP)
        self._expiry_wake = asyncio.Event()
        self._webhook_wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._listen(), name="access-wake"),
            asyncio.create_task(
                self._loop(self._expire, self._expiry_wake, self._expiry_delay), name="access-expiry"
            ),
            asyncio.create_task(self._webhook(), name="access-webhook"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    def wake(self) -> None:
        self._expiry_wake.set()
        self._webhook_wake.set()

    async def _listen(self) -> None:
        """Wake both tasks whenever any node says something changed."""
        while True:
            try:
                async for _ in self.services.bus.subscribe(vocabulary.ACCESS_CHANNEL):
                    self.wake()
            except asyncio.CancelledError:
                raise
            except Exception:  # the bus went away: the tasks still poll; listen again soon
                log.warning("access tasks: bus subscription failed; retrying", exc_info=True)
            await asyncio.sleep(BUS_RETRY_SECONDS)

    def _until(self, moment: dt.datetime | None) -> float:
        """Seconds to sleep before ``moment`` (by the one clock), at most the poll interval."""
        if moment is None:
            return self.poll
        left = (moment - self.services.clock.now()).total_seconds()
        return min(max(left, MIN_SLEEP), self.poll)

    async def _expire(self) -> None:
        await lifecycle.expire_due(self.services)
        await lifecycle.end_sessions_of_recent_ends(self.services)

    async def _expiry_delay(self) -> float:
        engine, now = self.services.engine, self.services.clock.now()
        delay = self._until(await access_requests.next_due(engine))
        if await access_requests.grants_ended_since(engine, now - lifecycle.SECOND_LOOK):
            delay = min(delay, 1.0)  # keep looking at just-ended grants' sessions for a while
        return delay

    async def _webhook(self) -> None:
        async with aiohttp.ClientSession() as http:
            deliverer = Deliverer(self.services, http)

            async def delay() -> float:
                return self._until(await access_webhooks.next_due(self.services.engine))

            async def deliver() -> None:
                await deliverer.deliver_due()

            await self._loop(deliver, self._webhook_wake, delay)

    async def _loop(
        self, work: Callable[[], Awaitable[None]], wake: asyncio.Event, delay: Callable[[], Awaitable[float]]
    ) -> None:
        while True:
            wake.clear()
            seconds = self.poll
            try:
                await work()
                seconds = await delay()
            except asyncio.CancelledError:
                raise
            except Exception:  # the database may be away for a moment: try again on the next pass
                log.exception("access task pass failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), seconds)


def install(app: web.Application, services: Services) -> AccessTasks:
    """Run the access tasks while the application runs."""
    tasks = AccessTasks(services)

    async def start(_: web.Application) -> None:
        tasks.start()

    async def stop(_: web.Application) -> None:
        await tasks.stop()

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    return tasks
