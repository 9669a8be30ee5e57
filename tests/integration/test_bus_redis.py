"""RedisBus against the Redis service on 127.0.0.1:6379 (in CI a missing Redis is a failure)."""

from __future__ import annotations

import asyncio
import pathlib
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from tests.conftest import require

from openssm.bus.base import MAX_MESSAGE_BYTES, Message
from openssm.bus.factory import make_bus
from openssm.bus.inprocess import InProcessBus
from openssm.bus.redis import BusMessageTooLarge, RedisBus
from openssm.services import ServerConfig

REDIS_URL = "redis://127.0.0.1:6379/0"
pytestmark = pytest.mark.redis


async def redis_reachable() -> str | None:
    client = aioredis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        await client.ping()
        return None
    except (OSError, aioredis.RedisError) as exc:
        return f"Redis not reachable at {REDIS_URL}: {exc}"
    finally:
        await client.aclose()


@pytest.fixture
async def bus() -> AsyncIterator[RedisBus]:
    problem = await redis_reachable()
    require(problem is None, problem or "")
    instance = RedisBus(REDIS_URL)
    try:
        yield instance
    finally:
        await instance.close()


async def subscribed(channel: str, count: int = 1) -> None:
    """Wait until Redis reports the subscription (SUBSCRIBE is asynchronous to PUBLISH)."""
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        for _ in range(200):
            numbers = dict(await client.pubsub_numsub(channel))
            if numbers.get(channel.encode(), 0) >= count:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"nobody subscribed to {channel}")
    finally:
        await client.aclose()


async def collect(bus: RedisBus, channel: str, count: int, into: list[Message]) -> None:
    async for message in bus.subscribe(channel):
        into.append(message)
        if len(into) == count:
            return


async def test_publish_reaches_every_subscriber_in_order(bus: RedisBus) -> None:
    channel = f"node.test-{uuid.uuid4()}"
    first: list[Message] = []
    second: list[Message] = []
    tasks = [asyncio.create_task(collect(bus, channel, 3, got)) for got in (first, second)]
    await subscribed(channel, 2)
    sent = [{"type": "terminate", "session_id": f"s-{i}", "reason": "r"} for i in range(3)]
    for message in sent:
        await bus.publish(channel, message)
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert first == sent
    assert second == sent


async def test_other_channels_and_malformed_messages_are_not_delivered(bus: RedisBus) -> None:
    channel = f"node.test-{uuid.uuid4()}"
    got: list[Message] = []
    task = asyncio.create_task(collect(bus, channel, 1, got))
    await subscribed(channel)
    raw = aioredis.Redis.from_url(REDIS_URL)
    try:
        await raw.publish(channel, b"not json")
        await raw.publish(channel, b"[1, 2]")
    finally:
        await raw.aclose()
    await bus.publish(f"{channel}-other", {"type": "elsewhere"})
    await bus.publish(channel, {"type": "here"})
    await asyncio.wait_for(task, 5)
    assert got == [{"type": "here"}]


async def test_unsubscribes_when_the_iterator_closes(bus: RedisBus) -> None:
    channel = f"node.test-{uuid.uuid4()}"
    got: list[Message] = []
    task = asyncio.create_task(collect(bus, channel, 1, got))
    await subscribed(channel)
    await bus.publish(channel, {"n": 1})
    await asyncio.wait_for(task, 5)
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        for _ in range(200):
            if dict(await client.pubsub_numsub(channel)).get(channel.encode(), 0) == 0:
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("subscription outlived its iterator")
    finally:
        await client.aclose()


async def test_oversized_messages_are_refused(bus: RedisBus) -> None:
    with pytest.raises(BusMessageTooLarge):
        await bus.publish("node.x", {"blob": "x" * MAX_MESSAGE_BYTES})


async def test_factory_picks_redis_only_when_configured(tmp_path: pathlib.Path) -> None:
    assert isinstance(make_bus(ServerConfig(data_dir=tmp_path)), InProcessBus)
    problem = await redis_reachable()
    require(problem is None, problem or "")
    bus = make_bus(ServerConfig(data_dir=tmp_path, redis_url=REDIS_URL))
    try:
        assert isinstance(bus, RedisBus)
        assert await bus.ping()
    finally:
        await bus.close()
