"""WebSocketConnection against aiohttp's own WebSocket client and server, on loopback."""

from __future__ import annotations

import asyncio
import os
import pathlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from tests.support.wait import wait_for

from openssm.protocol import websocket as codec
from openssm.transport import websocket_connection
from openssm.transport.websocket_connection import ConnectionClosed, WebSocketConnection, WsMessageType

Handler = Callable[[WebSocketConnection], Awaitable[None]]


async def serve_ours(handler: Handler, **accept: object) -> tuple[web.AppRunner, str]:
    """A server whose /ws is upgraded by websocket_connection.accept and served by ``handler``."""

    async def endpoint(request: web.Request) -> web.StreamResponse:
        accepted = await websocket_connection.accept(
            request,
            max_message=int(accept.get("max_message", 1 << 21)),  # type: ignore[call-overload]
            heartbeat=accept.get("heartbeat"),  # type: ignore[arg-type]
        )
        if not isinstance(accepted, WebSocketConnection):
            return accepted
        try:
            await handler(accepted)
        finally:
            await accepted.close()
        assert accepted.response is not None
        return accepted.response

    return await start_app(endpoint)


async def start_app(
    endpoint: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> tuple[web.AppRunner, str]:
    """A loopback server with ``endpoint`` at /ws: its runner and the URL."""
    app = web.Application()
    app.router.add_get("/ws", endpoint)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}/ws"


async def echo(connection: WebSocketConnection) -> None:
    async for message in connection:
        if message.type is WSMsgType.BINARY:
            await connection.send_bytes(message.data)
        elif message.type is WSMsgType.TEXT:
            await connection.send_str(message.data.upper())


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def test_the_compiled_mask_is_in_use() -> None:
    # Falling back to the pure-Python XOR would quietly cost the data channels most of their speed.
    assert websocket_connection.MASK is not codec.mask_python


async def test_our_server_talks_to_aiohttps_client(http: aiohttp.ClientSession) -> None:
    runner, url = await serve_ours(echo)
    try:
        async with http.ws_connect(url, max_msg_size=1 << 21) as client:
            await client.send_str("hello")
            assert (await client.receive(timeout=5)).data == "HELLO"
            big = os.urandom(1 << 20)
            await client.send_bytes(big)
            assert (await client.receive(timeout=5)).data == big
            await client.ping(b"are you there")  # answered by our pong (aiohttp checks nothing)
            await client.send_bytes(b"after the ping")
            assert (await client.receive(timeout=5)).data == b"after the ping"
            await client.close()
            assert client.close_code == 1000
    finally:
        await runner.cleanup()


async def test_our_server_refuses_a_plain_request_and_oversized_messages(http: aiohttp.ClientSession) -> None:
    runner, url = await serve_ours(echo, max_message=1000)
    try:
        async with http.get(url) as response:
            assert response.status == 400
        async with http.ws_connect(url) as client:
            await client.send_bytes(b"x" * 1001)
            message = await client.receive(timeout=5)
            assert message.type is WSMsgType.CLOSE
            assert message.data == codec.CLOSE_MESSAGE_TOO_BIG
    finally:
        await runner.cleanup()


async def serve_aiohttp(
    handler: Callable[[web.WebSocketResponse], Awaitable[None]], **ws: object
) -> tuple[web.AppRunner, str]:
    async def endpoint(request: web.Request) -> web.StreamResponse:
        response = web.WebSocketResponse(max_msg_size=1 << 21, **ws)  # type: ignore[arg-type]
        await response.prepare(request)
        await handler(response)
        return response

    return await start_app(endpoint)


async def test_our_client_talks_to_aiohttps_server() -> None:
    seen: list[object] = []

    async def server(ws: web.WebSocketResponse) -> None:
        first = await ws.receive()
        seen.append(first.data)
        await ws.ping(b"ping from the server")  # our client answers it
        big = os.urandom(1 << 20)
        await ws.send_bytes(big)
        seen.append(big)
        echoed = await ws.receive()
        seen.append(echoed.data)
        await ws.close(code=4001, message=b"done")

    runner, url = await serve_aiohttp(server)
    try:
        connection = await websocket_connection.dial(url, max_message=1 << 21)
        await connection.send_str("open")
        message = await connection.receive(timeout=5)
        assert message.type is WsMessageType.BINARY
        await connection.send_parts([message.data[:10], memoryview(message.data)[10:]])
        closing = await connection.receive(timeout=5)
        assert closing.type is WsMessageType.CLOSE and closing.data == 4001 and closing.extra == "done"
        assert (await connection.receive(timeout=5)).type is WsMessageType.CLOSED
        assert seen[0] == "open" and seen[2] == seen[1]
        with pytest.raises(ConnectionClosed):
            await connection.send_bytes(b"too late")
    finally:
        await runner.cleanup()


async def test_a_batch_of_small_messages_goes_out_in_one_write() -> None:
    """A keystroke's echo and the ack queued before it leave together (one wake-up of the peer);
    a large batch goes in slices of WRITE_BATCH bytes, each message whole and in order."""
    received: list[bytes] = []
    small: list[list[bytes | memoryview]] = [[b"ack"], [b"echo: ", memoryview(b"k")], [b""]]
    large: list[list[bytes | memoryview]] = [
        [os.urandom(websocket_connection.WRITE_BATCH // 2 + 1)] for _ in range(3)
    ]

    async def server(ws: web.WebSocketResponse) -> None:
        for _ in range(len(small) + len(large)):
            received.append((await ws.receive(timeout=5)).data)
        await ws.send_str("done")
        await ws.close()

    runner, url = await serve_aiohttp(server)
    try:
        connection = await websocket_connection.dial(url, max_message=1 << 21)
        transport = connection._transport
        assert transport is not None
        writes: list[int] = []
        real_write = transport.write

        def write(data: bytes | bytearray | memoryview) -> None:
            writes.append(len(data))
            real_write(data)

        def writelines(list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
            write(b"".join(list_of_data))  # (asyncio's own joins them and calls write)

        transport.write, transport.writelines = write, writelines  # type: ignore[method-assign]
        await connection.send_messages(small)
        assert len(writes) == 1
        await connection.send_messages(large)
        assert len(writes) == 3  # two slices: the first two messages pass WRITE_BATCH
        assert (await connection.receive(timeout=5)).data == "done"
        assert received == [b"".join(bytes(part) for part in parts) for parts in small + large]
    finally:
        await runner.cleanup()


async def test_only_one_task_may_wait_to_receive() -> None:
    async def quiet(ws: web.WebSocketResponse) -> None:
        await ws.receive()

    runner, url = await serve_aiohttp(quiet)
    try:
        connection = await websocket_connection.dial(url, max_message=1000)
        waiting = asyncio.create_task(connection.receive())
        await wait_for(lambda: connection._waiter is not None, 5, "the first receive to start waiting")
        with pytest.raises(RuntimeError, match="already"):
            await connection.receive()
        await connection.close()
        assert (await asyncio.wait_for(waiting, 5)).type in (WsMessageType.CLOSE, WsMessageType.CLOSED)
    finally:
        await runner.cleanup()


async def test_a_peer_that_answers_no_ping_is_dropped() -> None:
    async def mute(ws: web.WebSocketResponse) -> None:
        await asyncio.sleep(2)  # deliberate: a mute peer (autoping off, nothing read) for the test's span

    runner, url = await serve_aiohttp(mute, autoping=False)
    try:
        connection = await websocket_connection.dial(url, max_message=1000, heartbeat=0.2)
        message = await connection.receive(timeout=5)
        assert message.type is WsMessageType.CLOSED
        assert isinstance(connection.exception(), TimeoutError)
    finally:
        await runner.cleanup()


async def test_an_idle_but_answering_peer_is_kept(http: aiohttp.ClientSession) -> None:
    runner, url = await serve_ours(echo, heartbeat=0.2)
    try:
        async with http.ws_connect(url, autoping=True) as client:
            with pytest.raises(TimeoutError):  # aiohttp answers pings while it reads
                await asyncio.wait_for(client.receive(), 1.0)  # five heartbeats: our pings, its pongs
            await client.send_str("still here")
            assert (await client.receive(timeout=5)).data == "STILL HERE"
    finally:
        await runner.cleanup()


MESSAGE = 1_000_000


def _messages_past_the_buffers(size: int) -> int:
    """How many messages of ``size`` bytes overflow the loopback's kernel buffers (both ends' maxima,
    read from /proc) and the receiver's high-water mark, with a few to spare."""
    total = websocket_connection.DEFAULT_HIGH_WATER
    for name in ("tcp_rmem", "tcp_wmem"):
        try:
            total += int(pathlib.Path(f"/proc/sys/net/ipv4/{name}").read_text().split()[2])
        except (OSError, ValueError, IndexError):
            total += 32 << 20
    return total // size + 4


async def test_reading_stops_while_messages_wait_unread(http: aiohttp.ClientSession) -> None:
    # More than every buffer on the way can hold (the kernel's, which autotune up to tcp_rmem's and
    # tcp_wmem's maxima, 32 MiB and 4 MiB on some machines, and our high-water mark), so the sender
    # can only finish once the server reads again.
    count = _messages_past_the_buffers(MESSAGE)
    got: list[int] = []
    release = asyncio.Event()
    paused: list[bool] = []
    server_side: list[WebSocketConnection] = []

    async def slow(connection: WebSocketConnection) -> None:
        server_side.append(connection)
        await release.wait()
        paused.append(connection._throttle.paused)
        async for message in connection:
            got.append(len(message.data))
            if len(got) == count:
                return

    runner, url = await serve_ours(slow)
    try:
        async with http.ws_connect(url) as client:

            async def send() -> None:
                for _ in range(count):
                    await client.send_bytes(b"z" * MESSAGE)

            sending = asyncio.create_task(send())
            await wait_for(
                lambda: bool(server_side) and server_side[0]._throttle.paused,
                10,
                "the server to stop reading",
            )
            assert not sending.done()  # held back: the server stopped reading at its high-water mark
            release.set()
            await asyncio.wait_for(sending, 30)
            await wait_for(lambda: len(got) == count, 10, "every message read")
            assert paused == [True]
            assert got == [MESSAGE] * count  # all of them, in order, after the pause
    finally:
        await runner.cleanup()


async def test_a_paused_reader_pings_its_peer_and_does_not_judge_it() -> None:
    """While our reads are paused (the consumer is behind), the peer's bytes, pongs included, wait
    unread: we ping it so that its heartbeat keeps us, and our own heartbeat holds its judgement."""
    pings: list[float] = []
    done = asyncio.Event()

    async def sender(ws: web.WebSocketResponse) -> None:
        async def push() -> None:
            for _ in range(20):
                await ws.send_bytes(b"y" * 1_000_000)

        await ws.receive()  # the client speaks first, as on data channels: it has taken the socket over
        pushing = asyncio.create_task(push())
        async for message in ws:
            if message.type is WSMsgType.PING:
                pings.append(asyncio.get_running_loop().time())
                await ws.pong(message.data)
            elif message.type is WSMsgType.TEXT:
                break
        await pushing
        done.set()

    runner, url = await serve_aiohttp(sender, autoping=False)
    try:
        connection = await websocket_connection.dial(
            url, max_message=1 << 21, heartbeat=0.3, paused_ping_interval=0.1
        )
        await connection.send_str("start")
        # five heartbeats without reading a byte
        await wait_for(lambda: len(pings) >= 5, 10, "five pings while paused")
        assert connection._throttle.paused and not connection.closed
        sizes = [len((await connection.receive(timeout=5)).data) for _ in range(20)]
        assert sizes == [1_000_000] * 20
        await connection.send_str("done")
        await asyncio.wait_for(done.wait(), 5)
        assert connection.exception() is None
        await connection.close()
    finally:
        await runner.cleanup()
