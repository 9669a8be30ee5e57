"""The embedded-mode bus: asyncio queues inside one process."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator

from openssm.bus.base import Bus, Message

QUEUE_LIMIT = 10_000


class InProcessBus(Bus):
    def __init__(self) -> None:
        self._subscribers: dict[str, set[asyncio.Queue[Message]]] = collections.defaultdict(set)

    async def publish(self, channel: str, message: Message) -> None:
        for queue in list(self._subscribers.get(channel, ())):
            if queue.qsize() < QUEUE_LIMIT:  # a stuck subscriber must not grow memory forever
                queue.put_nowait(message)

    async def subscribe(self, channel: str) -> AsyncIterator[Message]:  # type: ignore[override]
        queue: asyncio.Queue[Message] = asyncio.Queue()
        self._subscribers[channel].add(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._subscribers[channel].discard(queue)
