"""Things good once: a key presented a second time within its time to live is a replay. A node on its
own remembers in memory; nodes sharing a Redis remember there (``SET … NX EX``), so a request
replayed to another node behind the load balancer is refused too (:meth:`Bus.first_use`)."""

from __future__ import annotations

import collections


class MemoryOnce:
    """One node's memory of keys seen, each until its expiry. Bounded: past ``max_keys`` the oldest
    are forgotten first (at the sizes a replay guard sees, long after they expired)."""

    def __init__(self, max_keys: int = 200_000) -> None:
        self.max_keys = max_keys
        self._expiry: collections.OrderedDict[str, float] = collections.OrderedDict()

    def first_use(self, key: str, now: float, ttl: float) -> bool:
        while self._expiry:
            oldest, until = next(iter(self._expiry.items()))
            if until > now and len(self._expiry) < self.max_keys:
                break
            del self._expiry[oldest]
        seen_until = self._expiry.get(key)
        if seen_until is not None and seen_until > now:
            return False
        self._expiry[key] = now + ttl
        self._expiry.move_to_end(key)
        return True
