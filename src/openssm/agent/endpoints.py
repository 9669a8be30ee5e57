"""The server nodes an agent may talk to (scale-out), and which one it uses now.

A scale-out OpenSSM runs several identical nodes; any answers the API, and a session's bytes go
through the node holding the agent's control channel, which is why the agent talks to one node at
a time (not through a load balancer). It starts on the node it was configured with; when that
node cannot be reached, it moves on through the others in an order of its own (shuffled once per
agent, so a dead node's agents spread over the survivors instead of all landing on the next one),
wrapping around; its control channel's backoff paces the tries.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence

log = logging.getLogger(__name__)


class Endpoints:
    def __init__(self, urls: Sequence[str], rng: random.Random | None = None) -> None:
        """``rng``: what shuffles the failover order (None: a fresh random order)."""
        if not urls:
            raise ValueError("at least one endpoint is needed")
        first, *others = urls
        (rng or random.Random()).shuffle(others)
        self.urls = (first, *others)
        self._index = 0

    @property
    def current(self) -> str:
        return self.urls[self._index]

    def fail_over(self, failed: str) -> str:
        """Move on from ``failed`` to the next node of this agent's order, unless someone already
        moved on from it.

        Several loops (control channel, health pings) notice the same outage: only the first
        report of a node counts, so the agent never skips over a healthy node.
        """
        if len(self.urls) > 1 and failed == self.current:
            self._index = (self._index + 1) % len(self.urls)
            log.warning("server %s is unreachable; switching to %s", failed, self.current)
        return self.current
