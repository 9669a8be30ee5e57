"""openssm.transport.tcp_connection over real loopback sockets: chunks, half-close, back-pressure, errors,
on both event loops the processes run (the standard one and uvloop, see openssm.transport.runtime)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest
import uvloop
from tests.support.wait import wait_for

from openssm.transport import tcp_connection
from openssm.transport.tcp_connection import TcpConnection

Run = Callable[[Coroutine[Any, Any, None]], None]


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Run:
    """Each test body runs to completion on a fresh loop of either kind."""
    return uvloop.run if request.param == "uvloop" else asyncio.run


async def pair(
    high_water: int = tcp_connection.DEFAULT_HIGH_WATER,
) -> tuple[TcpConnection, TcpConnection, asyncio.Server]:
    accepted: asyncio.Queue[TcpConnection] = asyncio.Queue()
    server = await tcp_connection.start_server(accepted.put_nowait, "127.0.0.1", 0, high_water=high_water)
    port = server.sockets[0].getsockname()[1]
    client = await tcp_connection.open_connection("127.0.0.1", port, high_water=high_water)
    return client, await asyncio.wait_for(accepted.get(), 5), server


async def read_all(connection: TcpConnection, chunk: int = 65536) -> bytes:
    parts = []
    while data := await connection.read(chunk):
        assert 0 < len(data) <= chunk
        parts.append(data)
    return b"".join(parts)


def test_bytes_arrive_in_order_within_the_read_size_and_eof_is_empty(run: Run) -> None:
    run(_bytes_arrive_in_order_within_the_read_size_and_eof_is_empty())


@contextlib.asynccontextmanager
async def received(payload: bytes) -> AsyncIterator[TcpConnection]:
    """A connection whose peer has sent ``payload`` and then EOF."""
    client, served, server = await pair()
    async with server:
        client.write(payload)
        await client.drain()
        client.write_eof()
        try:
            yield served
        finally:
            await tcp_connection.close_quietly(client)
            await tcp_connection.close_quietly(served)


async def _bytes_arrive_in_order_within_the_read_size_and_eof_is_empty() -> None:
    payload = os.urandom(3 << 20)
    async with received(payload) as served:
        assert await read_all(served, chunk=100_003) == payload
        assert await served.read(10) == b""  # EOF stays EOF


def test_read_parts_hands_over_received_chunks_unjoined(run: Run) -> None:
    run(_read_parts_hands_over_received_chunks_unjoined())


async def _read_parts_hands_over_received_chunks_unjoined() -> None:
    payload = os.urandom(3 << 20)
    async with received(payload) as served:
        kept: list[bytes | memoryview] = []
        while parts := await served.read_parts(100_003):
            assert 0 < sum(len(part) for part in parts) <= 100_003
            for part in parts:
                # Safe to keep uncopied (smux queues them as they are): bytes or read-only views.
                assert isinstance(part, bytes) or part.readonly
                kept.append(part)
        assert await served.read_parts(10) == []
        # Later reads never wrote over a region handed out earlier.
        assert b"".join(kept) == payload
        assert any(isinstance(part, memoryview) for part in kept), "large reads come as views"


def test_small_reads_come_as_bytes(run: Run) -> None:
    run(_small_reads_come_as_bytes())


async def _small_reads_come_as_bytes() -> None:
    # A few bytes are copied out, rather than pinning a whole read buffer for as long as kept.
    client, served, server = await pair()
    async with server:
        for message in (b"one", b"two", b"three"):
            client.write(message)
            (part,) = await served.read_parts(1000)
            assert isinstance(part, bytes) and part == message
        await tcp_connection.close_quietly(client)


def test_half_close_keeps_the_other_direction_open(run: Run) -> None:
    run(_half_close_keeps_the_other_direction_open())


async def _half_close_keeps_the_other_direction_open() -> None:
    client, served, server = await pair()
    async with server:
        client.write(b"question")
        client.write_eof()
        assert await read_all(served) == b"question"
        served.write(b"answer after your EOF")
        await served.drain()
        served.close()
        assert await read_all(client) == b"answer after your EOF"
        await tcp_connection.close_quietly(client)


def test_a_slow_reader_pauses_the_socket_instead_of_buffering_everything(run: Run) -> None:
    run(_a_slow_reader_pauses_the_socket_instead_of_buffering_everything())


async def _a_slow_reader_pauses_the_socket_instead_of_buffering_everything() -> None:
    high_water = 64 * 1024
    client, served, server = await pair(high_water)
    async with server:
        sender = asyncio.create_task(_send_forever(client))
        await wait_for(lambda: served._throttle.paused, 10, "the reader never paused the socket")
        # Unread data stays near the high-water mark: the rest waits in kernel buffers and the sender.
        assert served._throttle.paused
        # One more read's worth at most.
        assert served._throttle.queued <= high_water + tcp_connection.READ_BUFFER_SIZE
        received = 0
        async with asyncio.timeout(10):
            while received < 8 << 20:
                received += len(await served.read(1 << 20))
        assert not sender.done()
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
        served.abort()
        await tcp_connection.close_quietly(client)


def test_close_gives_up_on_a_peer_that_stopped_reading(run: Run) -> None:
    run(_close_gives_up_on_a_peer_that_stopped_reading())


async def _close_gives_up_on_a_peer_that_stopped_reading() -> None:
    client, served, server = await pair()
    async with server:
        served._transport.pause_reading()  # type: ignore[union-attr]
        client.write(bytes(16 << 20))  # more than the kernel buffers hold: the rest waits in ours
        async with asyncio.timeout(5):
            await tcp_connection.close_quietly(client, timeout=0.5)
        assert client._closed.done()
        served.abort()


async def _send_forever(connection: TcpConnection) -> None:
    block = bytes(256 * 1024)
    while True:
        connection.write(block)
        await connection.drain()


def test_drain_waits_for_a_reader_that_does_not_read(run: Run) -> None:
    run(_drain_waits_for_a_reader_that_does_not_read())


async def _drain_waits_for_a_reader_that_does_not_read() -> None:
    client, served, server = await pair()
    async with server:
        served._transport.pause_reading()  # type: ignore[union-attr]
        block = bytes(1 << 20)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(1):
                while True:  # the kernel buffers fill, then drain must block
                    client.write(block)
                    await client.drain()
        served.abort()
        await tcp_connection.close_quietly(client)


def test_a_reset_connection_raises_on_read_and_write(run: Run) -> None:
    run(_a_reset_connection_raises_on_read_and_write())


async def _a_reset_connection_raises_on_read_and_write() -> None:
    client, served, server = await pair()
    async with server:
        raw = client._transport.get_extra_info("socket")  # type: ignore[union-attr]
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        client._transport.abort()  # type: ignore[union-attr]  # RST, not FIN

        async def write_fails() -> bool:
            served.write(b"x" * 65536)  # raises once the kernel has told the transport of the RST
            await served.drain()
            return False

        with pytest.raises(ConnectionError):
            async with asyncio.timeout(5):
                while await served.read(1024):
                    pass
                # Some kernels report the RST as EOF first; a write after it must fail.
                await wait_for(write_fails, 5, "writes after the reset kept succeeding")
        await tcp_connection.close_quietly(served)


def test_unix_socket_server(run: Run, tmp_path: object) -> None:
    run(_unix_socket_server(tmp_path))


async def _unix_socket_server(tmp_path: object) -> None:
    path = f"{tmp_path}/s.sock"
    accepted: asyncio.Queue[TcpConnection] = asyncio.Queue()
    server = await tcp_connection.start_unix_server(accepted.put_nowait, path)
    async with server:
        _reader, writer = await asyncio.open_unix_connection(path)
        served = await asyncio.wait_for(accepted.get(), 5)
        writer.write(b"over a unix socket")
        writer.write_eof()
        assert await read_all(served) == b"over a unix socket"
        writer.close()
        await tcp_connection.close_quietly(served)


def test_high_water_must_be_positive() -> None:
    async def build() -> None:
        TcpConnection(high_water=0)

    with pytest.raises(ValueError):
        asyncio.run(build())
