"""Failed attempts in Redis, shared by every node on it: one sorted set per key (score and member
the failure's time), trimmed to the window and to the latest few on every write, and expiring with
the window, so Redis holds nothing about a key that has not failed lately. Key names are a hash of
the key: bounded in length, and an address or access key id is not spelt out in Redis."""

from __future__ import annotations

import hashlib
import math
import secrets

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from openssm.bus.failures import FailureLog, FailureLogUnavailable


class RedisFailureLog(FailureLog):
    def __init__(self, client: aioredis.Redis, namespace: str) -> None:
        self._redis = client
        self._prefix = f"openssm:{namespace}:"

    def _name(self, key: str) -> str:
        return self._prefix + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()

    async def recent(self, key: str, now: float, window: float) -> list[float]:
        name = self._name(key)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.zremrangebyscore(name, "-inf", now - window)  # as in memory: kept while now - t < window
                pipe.zrange(name, 0, -1, withscores=True)
                _, entries = await pipe.execute()
        except (OSError, RedisError) as exc:
            raise FailureLogUnavailable(f"cannot read failed attempts from Redis: {exc}") from exc
        return sorted(float(score) for _, score in entries)

    async def add(self, key: str, now: float, window: float, keep: int) -> None:
        name = self._name(key)
        member = f"{now!r}:{secrets.token_hex(6)}"  # two nodes failing at the same instant count twice
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.zadd(name, {member: now})
                pipe.zremrangebyscore(name, "-inf", now - window)
                pipe.zremrangebyrank(name, 0, -(keep + 1))
                pipe.expire(name, max(1, math.ceil(window)))
                await pipe.execute()
        except (OSError, RedisError) as exc:
            raise FailureLogUnavailable(f"cannot count a failed attempt in Redis: {exc}") from exc

    async def clear(self, key: str) -> None:
        try:
            await self._redis.delete(self._name(key))
        except (OSError, RedisError) as exc:
            raise FailureLogUnavailable(f"cannot clear failed attempts in Redis: {exc}") from exc
