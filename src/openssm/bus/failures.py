"""Failed attempts per key (a client address, an access key id) within a time window: what sign-in
throttling counts. A node on its own keeps them in memory; nodes sharing a Redis keep them there
(``openssm.bus.redis_failures``), so an attacker spreading guesses over the nodes behind a load
balancer meets one count, not one per node. The bus hands out the right one
(:meth:`openssm.bus.base.Bus.failure_log`).

Times are wall-clock seconds (the nodes share no monotonic clock); the caller passes ``now``.
"""

from __future__ import annotations

import abc
import collections

from openssm.errors import OpenSSMError


class FailureLogUnavailable(OpenSSMError):
    """The shared log cannot be reached: callers refuse the attempt rather than count nothing."""


class FailureLog(abc.ABC):
    @abc.abstractmethod
    async def recent(self, key: str, now: float, window: float) -> list[float]:
        """The times of ``key``'s failures within ``window`` seconds before ``now``, oldest first."""

    @abc.abstractmethod
    async def add(self, key: str, now: float, window: float, keep: int) -> None:
        """Count a failure of ``key`` at ``now``; at most the ``keep`` latest are kept, each for
        ``window`` seconds."""

    @abc.abstractmethod
    async def clear(self, key: str) -> None:
        """Forget ``key``'s failures (a success)."""


class MemoryFailureLog(FailureLog):
    """One node's log: a restart forgets it. Bounded: past ``max_keys`` keys the least recently
    failed are forgotten, so a flood of distinct addresses cannot grow memory without end."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self.max_keys = max_keys
        self._failures: collections.OrderedDict[str, list[float]] = collections.OrderedDict()

    def _recent(self, key: str, now: float, window: float) -> list[float]:
        times = [t for t in self._failures.get(key, []) if now - t < window]
        if times:
            self._failures[key] = times
        else:
            self._failures.pop(key, None)
        return times

    async def recent(self, key: str, now: float, window: float) -> list[float]:
        return list(self._recent(key, now, window))

    async def add(self, key: str, now: float, window: float, keep: int) -> None:
        times = self._recent(key, now, window)
        times.append(now)
        self._failures[key] = times[-keep:]
        self._failures.move_to_end(key)
        while len(self._failures) > self.max_keys:
            self._failures.popitem(last=False)

    async def clear(self, key: str) -> None:
        self._failures.pop(key, None)

    def __len__(self) -> int:
        return len(self._failures)
