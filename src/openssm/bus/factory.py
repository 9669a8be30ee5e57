"""Choosing the bus: Redis when the server is configured for scale-out, else in-process."""

from __future__ import annotations

from openssm.bus.base import Bus
from openssm.bus.inprocess import InProcessBus
from openssm.services import ServerConfig


def make_bus(config: ServerConfig) -> Bus:
    if config.redis_url:
        from openssm.bus.redis import RedisBus  # only scale-out nodes need the Redis client loaded

        return RedisBus(config.redis_url)
    return InProcessBus()
