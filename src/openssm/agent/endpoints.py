"""The server nodes an agent may talk to (scale-out), and which one it uses now.

A scale-out OpenSSM runs several identical nodes; any answers the API, and a session's bytes go
through the node holding the agent's control channel, which is why the agent talks to one node at
a time (not through a load balancer). When that node cannot be reached, the agent moves to the
next one in the configured order, wrapping around; its control channel's backoff paces the tries.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

log = logging.getLogger(__name__)


class Endpoints:
    def __init__(self, urls: Sequence[str]) -> None:
        if not urls:
            raise ValueError("at least one endpoint is needed")
        self.urls = tuple(urls)
        self._index = 0

    @property
    def current(self) -> str:
        return self.urls[self._index]

    def fail_over(self, failed: str) -> str:
        """Move on from ``failed`` to the next node, unless someone already moved on from it.

        Several loops (control channel, health pings) notice the same outage: only the first
        report of a node counts, so the agent never skips over a healthy node.
        """
        if len(self.urls) > 1 and failed == self.current:
            self._index = (self._index + 1) % len(self.urls)
            log.warning("server %s is unreachable; switching to %s", failed, self.current)
        return self.current
