"""ChannelDriver over a real loopback WebSocket, with socket buffers really full."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator, Coroutine, Sequence
from typing import Any, Final

from aiohttp import web
from tests.support.wait import wait_for
from tests.unit.test_websocket_connection import start_app

from openssm.clock import SYSTEM_CLOCK
from openssm.protocol.datachannel import DataChannelCore, Role, StreamData
from openssm.protocol.frames import Frame, MessageType, PayloadType, acked_sequence, decode
from openssm.transport import websocket_connection
from openssm.transport.datachannel import ChannelDriver, Delivered
from openssm.transport.websocket_connection import ClientWebSocket, WebSocketConnection, WsMessageType

MAX_MESSAGE: Final = 1 << 21


class Sink:
    """A handler that takes every message at once and counts them and their bytes."""

    def __init__(self) -> None:
        self.messages = 0
        self.received = 0

    def ready(self, frame: Frame) -> bool:
        return True

    async def on_event(self, event: StreamData | Delivered) -> None:
        if isinstance(event, StreamData):
            self.messages += 1
            self.received += len(event.frame.payload)


def end(role: Role, window: int) -> tuple[ChannelDriver, Sink]:
    core = DataChannelCore(role, now=SYSTEM_CLOCK.monotonic(), send_window=window)
    driver = ChannelDriver(core, peer=role.value)
    sink = Sink()
    driver.set_handler(sink)
    return driver, sink


class Loopback:
    """A WebSocket over loopback TCP: ``server`` (accepted, its send buffer ``sndbuf`` bytes if
    given) and ``client`` (dialled); tasks started with :meth:`start` are cancelled at the end."""

    def __init__(self) -> None:
        self.server: WebSocketConnection
        self.client: ClientWebSocket
        self.tasks: list[asyncio.Task[Any]] = []

    def start(self, coro: Coroutine[Any, Any, Any]) -> None:
        self.tasks.append(asyncio.create_task(coro))


@contextlib.asynccontextmanager
async def loopback(sndbuf: int | None = None) -> AsyncIterator[Loopback]:
    pair = Loopback()
    accepted: asyncio.Future[WebSocketConnection] = asyncio.Future()
    finished = asyncio.Event()

    async def endpoint(request: web.Request) -> web.StreamResponse:
        if sndbuf is not None and request.transport is not None:
            request.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        connection = await websocket_connection.accept(request, max_message=MAX_MESSAGE, heartbeat=None)
        if not isinstance(connection, WebSocketConnection):
            return connection
        accepted.set_result(connection)
        await finished.wait()
        await connection.close()
        assert connection.response is not None
        return connection.response

    runner, url = await start_app(endpoint)
    try:
        pair.client = await websocket_connection.dial(url, max_message=MAX_MESSAGE)
        pair.server = await asyncio.wait_for(accepted, 10)
        yield pair
    finally:
        finished.set()
        for task in pair.tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if hasattr(pair, "client"):
            await pair.client.close()
        await runner.cleanup()


# Keystroke-sized messages: each one's ack is larger than the message, so the acks fill the
# driver's socket (a 4 KiB send buffer, a peer that reads nothing) long before the peer has sent
# them all.
BACKLOG: Final = 20_000


async def test_acks_do_not_stop_the_reads_of_a_peer_that_sends_before_it_reads() -> None:
    # The peer writes its whole backlog before it reads anything (as an end replaying what it holds
    # after a reconnect does). The driver's acks fill its socket; a read loop that wrote them itself
    # waited for room there and stopped reading, so the peer's writes stopped too, for good.
    async with loopback(sndbuf=4096) as pair:
        agent, sink = end(Role.AGENT, BACKLOG)
        await agent.attach(pair.server)
        pair.start(agent.serve(None))
        peer = DataChannelCore(Role.CLIENT, now=SYSTEM_CLOCK.monotonic(), send_window=BACKLOG)
        peer.connected(SYSTEM_CLOCK.monotonic())

        async def send_backlog() -> None:
            for n in range(BACKLOG):
                peer.send(PayloadType.OUTPUT, b"%d" % (n % 10), SYSTEM_CLOCK.monotonic())
                for parts in peer.data_to_send():
                    await pair.client.send_parts(parts)

        pair.start(send_backlog())
        await wait_for(
            lambda: sink.messages == BACKLOG,
            60,
            "stuck: the driver stopped taking messages from a peer that reads nothing",
        )
        acked: set[int] = set()  # now the peer reads: every message was acked
        async with asyncio.timeout(60):
            async for message in pair.client:
                assert message.type == WsMessageType.BINARY
                frame = decode(message.data)
                assert frame.message_type == MessageType.ACKNOWLEDGE
                acked.add(acked_sequence(frame))
                if len(acked) == BACKLOG:
                    break
        assert acked == set(range(BACKLOG))


MESSAGE: Final = 64 * 1024
TOTAL: Final = 32 * 1024 * 1024


async def pump(driver: ChannelDriver) -> None:
    payload = os.urandom(MESSAGE)
    for _ in range(TOTAL // MESSAGE):
        await driver.send(PayloadType.OUTPUT, payload)


async def test_both_ends_sending_bulk_do_not_wait_on_each_other() -> None:
    # Each end sends more than the sockets between them hold while the other does the same: the
    # senders, the writer tasks and the read loops share the sockets, and nothing is lost or stuck.
    async with loopback() as pair:
        agent, agent_sink = end(Role.AGENT, TOTAL // MESSAGE)
        client, client_sink = end(Role.CLIENT, TOTAL // MESSAGE)
        await agent.attach(pair.server)
        await client.attach(pair.client)
        for driver in (agent, client):
            pair.start(driver.serve(None))
            pair.start(pump(driver))
        await wait_for(
            lambda: agent_sink.received == TOTAL and client_sink.received == TOTAL,
            120,
            "stuck: the two ends stopped taking each other's messages",
        )
        assert await agent.wait_acked(30) and await client.wait_acked(30)


class Echo:
    """A handler that answers each message as a PTY echoes a keystroke: after ``delay`` seconds (0:
    a loop turn later, which a stalled process cannot stretch past REPLY_WAIT) or never (None, as
    a terminal with echo off)."""

    def __init__(self, driver: ChannelDriver, delay: float | None) -> None:
        self.driver = driver
        self.delay = delay
        self.answers: list[asyncio.Task[None]] = []

    def ready(self, frame: Frame) -> bool:
        return True

    async def on_event(self, event: StreamData | Delivered) -> None:
        if isinstance(event, StreamData):
            self.driver.expect_reply()
            if self.delay is not None:
                self.answers.append(asyncio.create_task(self.answer(bytes(event.frame.payload))))

    async def answer(self, payload: bytes) -> None:
        await asyncio.sleep(self.delay or 0)
        await self.driver.send(PayloadType.OUTPUT, payload)


async def batches_for(delay: float | None) -> list[list[str]]:
    """One keystroke to an :class:`Echo` end: the message types of each write that end made."""
    async with loopback() as pair:
        agent = ChannelDriver(DataChannelCore(Role.AGENT, now=SYSTEM_CLOCK.monotonic()), peer="agent")
        agent.set_handler(Echo(agent, delay))
        writes: list[list[str]] = []
        send_messages = pair.server.send_messages

        async def recorded(messages: Sequence[Sequence[bytes | bytearray | memoryview]]) -> None:
            writes.append(
                [decode(b"".join(bytes(part) for part in parts)).message_type for parts in messages]
            )
            await send_messages(messages)

        pair.server.send_messages = recorded  # type: ignore[method-assign]
        await agent.attach(pair.server)
        pair.start(agent.serve(None))
        client = DataChannelCore(Role.CLIENT, now=SYSTEM_CLOCK.monotonic())
        client.connected(SYSTEM_CLOCK.monotonic())
        client.send(PayloadType.OUTPUT, b"k", SYSTEM_CLOCK.monotonic())
        for parts in client.data_to_send():
            await pair.client.send_parts(parts)
        wanted = 1 if delay is None else 2
        await wait_for(lambda: sum(len(batch) for batch in writes) >= wanted, 10, "the ack and the answer")
        return writes


async def test_the_ack_of_a_keystroke_waits_for_its_echo_and_goes_with_it() -> None:
    assert await batches_for(0.0) == [[MessageType.ACKNOWLEDGE, MessageType.OUTPUT_STREAM_DATA]]


async def test_the_ack_of_a_keystroke_goes_alone_when_no_echo_comes() -> None:
    # (It comes REPLY_WAIT later; batches_for gives up after 10 s.)
    assert await batches_for(None) == [[MessageType.ACKNOWLEDGE]]
