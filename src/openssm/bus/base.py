"""Node-to-node signalling. Messages are small JSON objects published on named channels.

Channels used: ``node.<node_id>`` (commands for the gateway node holding a session or control
channel: terminate a session, start or cancel a command; the vocabulary is ``node_channel``).
Delivery is at-most-once and best effort: state of record lives in the store.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from typing import Any

from openssm.bus.failures import FailureLog, MemoryFailureLog
from openssm.bus.once import MemoryOnce

Message = dict[str, Any]
MAX_MESSAGE_BYTES = 64 * 1024


class Bus(abc.ABC):
    @abc.abstractmethod
    async def publish(self, channel: str, message: Message) -> None: ...

    @abc.abstractmethod
    def subscribe(self, channel: str) -> AsyncIterator[Message]:
        """Messages published on ``channel`` after this call, until the iterator is closed."""

    async def ping(self) -> bool:
        """The bus is reachable (readiness). An in-process bus always is."""
        return True

    def failure_log(self, namespace: str) -> FailureLog:
        """Failed attempts (sign-in throttling) as every node on this bus sees them: this one node's
        in memory, unless the bus is shared (Redis)."""
        return MemoryFailureLog()

    async def first_use(self, namespace: str, key: str, *, now: float, ttl: float) -> bool:
        """True the first time ``key`` is presented within ``ttl`` seconds, on any node on this bus
        (a replay guard); ``now`` in wall-clock seconds."""
        once: MemoryOnce | None = getattr(self, "_once", None)
        if once is None:
            once = self._once = MemoryOnce()
        return once.first_use(f"{namespace}:{key}", now, ttl)

    async def close(self) -> None:  # noqa: B027 - optional hook
        pass
