"""Choosing the bus: Redis when the server is configured for scale-out, else in-process."""

from __future__ import annotations

from openssm.bus.base import Bus
from openssm.bus.inprocess import InProcessBus


def make_bus(redis_url: str | None) -> Bus:
    """Redis pub/sub at ``redis_url`` (scale-out), or the in-process bus of a single node."""
    if redis_url:
        from openssm.bus.redis import RedisBus  # only scale-out nodes need the Redis client loaded

        return RedisBus(redis_url)
    return InProcessBus()
