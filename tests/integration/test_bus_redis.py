"""RedisBus against the Redis service on 127.0.0.1:6379 (in CI a missing Redis is a failure)."""

from __future__ import annotations

import asyncio
import pathlib
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from tests.conftest import require
from tests.support.postgres import REDIS_URL

from openssm.bus.base import MAX_MESSAGE_BYTES, Message
from openssm.bus.factory import make_bus
from openssm.bus.inprocess import InProcessBus
from openssm.bus.redis import BusMessageTooLarge, RedisBus

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


async def test_factory_picks_redis_only_when_configured() -> None:
    assert isinstance(make_bus(None), InProcessBus)
    problem = await redis_reachable()
    require(problem is None, problem or "")
    bus = make_bus(REDIS_URL)
    try:
        assert isinstance(bus, RedisBus)
        assert await bus.ping()
    finally:
        await bus.close()


async def test_terminate_reaches_the_node_holding_the_session(tmp_path: pathlib.Path) -> None:
    """Two gateway nodes on one database and Redis: TerminateSession published for node B by
    anyone reaches B's session, and A ignores it."""
    from tests.support.gateway import next_frame, running_gateway, wait_for

    from openssm.protocol.frames import MessageType
    from openssm.protocol.messages import ClientOpen, ControlOpen
    from openssm.store.secrets import SecretCipher

    problem = await redis_reachable()
    require(problem is None, problem or "")
    suffix = uuid.uuid4().hex[:8]
    node_a, node_b = f"node-a-{suffix}", f"node-b-{suffix}"
    cipher = SecretCipher.generate()
    bus_a, bus_b = RedisBus(REDIS_URL), RedisBus(REDIS_URL)
    iid, sid = "i-0123456789abcdef0", "tester-0000000000000000b"
    try:
        async with (
            running_gateway(tmp_path, bus=bus_a, cipher=cipher, node_id=node_a) as a,
            running_gateway(tmp_path, bus=bus_b, cipher=cipher, node_id=node_b) as b,
        ):
            await subscribed(f"node.{node_b}")
            await b.add_instance(iid)
            await b.add_agent_user()
            await b.add_session(sid, iid, node_id=node_b)
            token = await b.channel_token(f"/v1/control-channel/{iid}")
            control = await b.agent_socket(f"/v1/control-channel/{iid}?role=subscribe&stream=input")
            await control.send_str(ControlOpen(token_value=token).to_text())
            await wait_for(lambda: iid in b.node.controls, 5, "no control channel")
            client = await b.client_socket(sid)
            await client.send_str(ClientOpen(token_value=await b.add_token("client", sid)).to_text())
            assert (await next_frame(control)).message_type == MessageType.INTERACTIVE_SHELL

            await a.services.bus.publish(
                f"node.{node_b}", {"type": "terminate", "session_id": sid, "reason": "stop"}
            )
            closed = await next_frame(client)
            assert closed.message_type == MessageType.CHANNEL_CLOSED
            assert closed.json()["Output"] == "stop"
            row = await a.wait_status(sid, "Terminated")
            assert row.termination_reason == "stop"
    finally:
        await bus_a.close()
        await bus_b.close()
