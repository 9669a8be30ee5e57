"""The scale-out bus: Redis pub/sub (redis-py asyncio). Same at-most-once semantics as the
in-process bus; messages are JSON objects of bounded size."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from openssm.bus.base import MAX_MESSAGE_BYTES, Bus, Message
from openssm.bus.failures import FailureLog, FailureLogUnavailable
from openssm.bus.redis_failures import RedisFailureLog
from openssm.errors import OpenSSMError

log = logging.getLogger(__name__)


class BusMessageTooLarge(OpenSSMError, ValueError):
    pass


def encode_message(message: Message) -> bytes:
    data = json.dumps(message, separators=(",", ":")).encode("utf-8")
    if len(data) > MAX_MESSAGE_BYTES:
        raise BusMessageTooLarge(f"bus message of {len(data)} bytes exceeds {MAX_MESSAGE_BYTES}")
    return data


def decode_message(data: bytes | str) -> Message | None:
    """A received message, or None for anything that is not a bounded JSON object."""
    if len(data) > MAX_MESSAGE_BYTES:
        return None
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


class RedisBus(Bus):
    def __init__(self, url: str) -> None:
        self._redis = aioredis.Redis.from_url(url)

    async def publish(self, channel: str, message: Message) -> None:
        await self._redis.publish(channel, encode_message(message))

    async def subscribe(self, channel: str) -> AsyncIterator[Message]:  # type: ignore[override]
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(channel)
        try:
            async for raw in pubsub.listen():
                if raw.get("type") != "message":
                    continue
                message = decode_message(raw["data"])
                if message is None:
                    log.warning("ignoring a malformed message on bus channel %s", channel)
                    continue
                yield message
        finally:
            try:
                await pubsub.unsubscribe(channel)
            finally:
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def ping(self) -> bool:
        return bool(await self._redis.ping())

    async def first_use(self, namespace: str, key: str, *, now: float, ttl: float) -> bool:
        """One ``SET NX`` with the time to live: atomic across every node on this Redis. Redis
        expires it by its own clock, so ``now`` is not needed here."""
        name = f"openssm:{namespace}:{key}"
        try:
            return bool(await self._redis.set(name, b"1", nx=True, px=max(1, int(ttl * 1000))))
        except (OSError, RedisError) as exc:
            raise FailureLogUnavailable(f"cannot check a replay in Redis: {exc}") from exc

    def failure_log(self, namespace: str) -> FailureLog:
        return RedisFailureLog(self._redis, namespace)

    async def close(self) -> None:
        await self._redis.aclose()
