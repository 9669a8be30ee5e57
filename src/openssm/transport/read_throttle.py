"""Read back-pressure for a protocol that queues what it receives until a consumer takes it."""

from __future__ import annotations

import asyncio


class ReadThrottle:
    """Stops the transport's reads while more than ``high_water`` bytes wait unread, and resumes
    them once the consumer has brought that down to half (so a slow consumer costs bounded memory
    and the socket is not paused and resumed for every read)."""

    def __init__(self, high_water: int) -> None:
        if high_water <= 0:
            raise ValueError("high_water must be positive")
        self.high_water = high_water
        self.transport: asyncio.Transport | None = None
        self.queued = 0
        self.paused = False

    def added(self, size: int) -> None:
        self.queued += size
        if self.queued > self.high_water and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def taken(self, size: int) -> None:
        self.queued -= size
        if self.paused and self.queued <= self.high_water // 2 and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
