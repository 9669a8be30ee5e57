"""The fault-injecting proxy (tests/support/faultproxy.py) against real loopback sockets."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from tests.support.faultproxy import FaultProxy, ProxyThread
from tests.support.wait import wait_for

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Echo until EOF, then half-close back."""
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.write_eof()
    await writer.drain()
    writer.close()


@contextlib.asynccontextmanager
async def target(handler: Handler = echo) -> AsyncIterator[tuple[asyncio.Server, list[BaseException]]]:
    errors: list[BaseException] = []

    async def guarded(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handler(reader, writer)
        except (OSError, asyncio.IncompleteReadError) as exc:
            errors.append(exc)

    server = await asyncio.start_server(guarded, "127.0.0.1", 0)
    try:
        yield server, errors
    finally:
        server.close()


@contextlib.asynccontextmanager
async def proxied(handler: Handler = echo) -> AsyncIterator[tuple[FaultProxy, list[BaseException]]]:
    async with target(handler) as (server, errors):
        proxy = FaultProxy("127.0.0.1", server.sockets[0].getsockname()[1])
        await proxy.start()
        try:
            yield proxy, errors
        finally:
            await proxy.close()


async def read_exactly(reader: asyncio.StreamReader, count: int, timeout: float = 10.0) -> bytes:
    async with asyncio.timeout(timeout):
        return await reader.readexactly(count)


async def nothing_arrives(reader: asyncio.StreamReader, seconds: float) -> bool:
    try:
        async with asyncio.timeout(seconds):
            await reader.read(1)
    except TimeoutError:
        return True
    return False


async def test_forwards_both_ways_byte_exact_and_counts() -> None:
    async with proxied() as (proxy, _):
        reader, writer = await asyncio.open_connection(*proxy.address)
        payload = os.urandom(3 << 20)

        async def send() -> None:
            writer.write(payload)
            await writer.drain()
            writer.write_eof()

        sender = asyncio.create_task(send())
        echoed = await read_exactly(reader, len(payload))
        await sender
        assert hashlib.sha256(echoed).digest() == hashlib.sha256(payload).digest()
        assert await reader.read() == b""  # the target's EOF came through after ours
        writer.close()
        assert proxy.counts.up == proxy.counts.down == len(payload)
        assert proxy.counts.last_up > 0 and proxy.counts.last_down > 0


async def test_reset_reaches_both_ends_as_rst() -> None:
    got_eof_or_reset = asyncio.Event()
    target_error: list[BaseException] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hello")
        try:
            await reader.read(1)
        except ConnectionResetError as exc:
            target_error.append(exc)
        got_eof_or_reset.set()

    async with proxied(hold) as (proxy, _):
        reader, writer = await asyncio.open_connection(*proxy.address)
        assert await read_exactly(reader, 5) == b"hello"
        assert proxy.reset() == 1
        with pytest.raises(ConnectionResetError):
            async with asyncio.timeout(5):
                await reader.read(1)
        async with asyncio.timeout(5):
            await got_eof_or_reset.wait()
        assert target_error, "the target saw a clean close, not a reset"
        writer.close()
        assert proxy.open_links() == []


async def test_blackhole_holds_bytes_without_closing_then_delivers_all() -> None:
    async with proxied() as (proxy, _):
        reader, writer = await asyncio.open_connection(*proxy.address)
        writer.write(b"before")
        assert await read_exactly(reader, 6) == b"before"
        started = time.monotonic()
        assert proxy.blackhole(seconds=0.5) == 1
        writer.write(b"during")
        assert await nothing_arrives(reader, 0.3)
        assert await read_exactly(reader, 6) == b"during"  # after the black-hole, nothing lost
        assert time.monotonic() - started >= 0.5
        assert proxy.counts.up == 12 and proxy.open_links()
        writer.close()


async def test_blackhole_of_new_dials_until_restored() -> None:
    async with proxied() as (proxy, _):
        proxy.blackhole()
        reader, writer = await asyncio.open_connection(*proxy.address)
        writer.write(b"ping")
        assert await nothing_arrives(reader, 0.3)
        proxy.restore()
        assert await read_exactly(reader, 4) == b"ping"
        writer.close()


async def test_blackhole_matching_one_link_leaves_the_other_flowing() -> None:
    async with proxied() as (proxy, _):
        data_request = b"GET /v1/data-channel/s-1 HTTP/1.1\r\n"
        control_request = b"GET /v1/control-channel/mi-1 HTTP/1.1\r\n"
        data_reader, data_writer = await asyncio.open_connection(*proxy.address)
        data_writer.write(data_request)
        control_reader, control_writer = await asyncio.open_connection(*proxy.address)
        control_writer.write(control_request)
        await read_exactly(data_reader, len(data_request))
        await read_exactly(control_reader, len(control_request))
        assert proxy.blackhole(match="/v1/data-channel/") == 1
        data_writer.write(b"x")
        control_writer.write(b"y")
        assert await read_exactly(control_reader, 1) == b"y"
        assert await nothing_arrives(data_reader, 0.2)
        assert proxy.reset(match="/v1/data-channel/") == 1
        assert [link.path for link in proxy.open_links()] == ["/v1/control-channel/mi-1"]
        data_writer.close()
        control_writer.close()


async def test_half_close_towards_the_server_keeps_the_other_direction() -> None:
    async def count_then_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received = await reader.read()  # until EOF
        writer.write(struct.pack("!I", len(received)))
        await writer.drain()
        writer.close()

    async with proxied(count_then_answer) as (proxy, _):
        reader, writer = await asyncio.open_connection(*proxy.address)
        writer.write(b"abc")
        await writer.drain()
        await proxy.wait_link()
        await wait_for(lambda: proxy.counts.up >= 3, 5, "the 3 bytes through the proxy")
        assert proxy.half_close("server") == 1
        # The target saw EOF after our 3 bytes, and its answer still reaches us.
        assert struct.unpack("!I", await read_exactly(reader, 4)) == (3,)
        writer.close()


async def test_half_close_towards_the_client() -> None:
    async with proxied() as (proxy, _):
        reader, writer = await asyncio.open_connection(*proxy.address)
        writer.write(b"GET / HTTP/1.1\r\n")
        await read_exactly(reader, 16)
        assert proxy.half_close("client") == 1
        assert await reader.read() == b""  # EOF, while our writing side is still open
        writer.close()


async def test_throttle_limits_each_direction() -> None:
    async with proxied() as (proxy, _):
        proxy.shape(rate=200_000)
        reader, writer = await asyncio.open_connection(*proxy.address)
        payload = os.urandom(100_000)
        started = time.monotonic()
        writer.write(payload)
        assert await read_exactly(reader, len(payload), timeout=20) == payload
        # Up and down are throttled one after the other for the first chunk, then overlap:
        # the whole round trip cannot take less than one direction's share.
        assert time.monotonic() - started >= 0.45
        writer.close()


def segments_received(sock: socket.socket) -> int:
    """Linux ``tcp_info.tcpi_segs_in``: TCP segments this socket has received."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    (segs_in,) = struct.unpack_from("I", info, 140)
    return int(segs_in)


async def test_one_byte_writes() -> None:
    segments: list[int] = []

    async def echo_and_count(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received = 0
        while received < 300 and (data := await reader.read(65536)):
            received += len(data)
        segments.append(segments_received(writer.get_extra_info("socket")))
        writer.write(b"x" * 300)
        await writer.drain()
        writer.close()

    async with proxied(echo_and_count) as (proxy, _):
        proxy.shape(one_byte=True)
        reader, writer = await asyncio.open_connection(*proxy.address)
        writer.write(os.urandom(300))
        assert await read_exactly(reader, 300) == b"x" * 300
        assert proxy.counts.up == proxy.counts.down == 300
        # Every byte left the proxy as a write of its own, and as a TCP segment of its own.
        assert proxy.counts.writes_up == proxy.counts.writes_down == 300
        assert segments[0] >= 300
        assert segments_received(writer.get_extra_info("socket")) >= 300
        writer.close()


async def test_delay_with_jitter_keeps_order() -> None:
    async with proxied() as (proxy, _):
        proxy.shape(delay=0.1, jitter=0.05)
        reader, writer = await asyncio.open_connection(*proxy.address)
        latencies: list[float] = []
        for index in range(20):
            sent_at = time.monotonic()
            writer.write(struct.pack("!I", index))
            (echoed,) = struct.unpack("!I", await read_exactly(reader, 4))
            assert echoed == index
            latencies.append(time.monotonic() - sent_at)
        # Each round trip crossed the proxy twice: at least 2 x (100 - 50) ms, and jittered.
        assert min(latencies) >= 0.1
        assert max(latencies) - min(latencies) > 0.02
        writer.close()


async def test_refuse_then_accept_on_the_same_port() -> None:
    async with proxied() as (proxy, _):
        port = proxy.port
        await proxy.refuse()
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection(*proxy.address)
        await proxy.accept()
        assert proxy.port == port
        reader, writer = await asyncio.open_connection(*proxy.address)
        writer.write(b"back")
        assert await read_exactly(reader, 4) == b"back"
        writer.close()


async def test_target_down_resets_the_dialling_end() -> None:
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        dead_port = placeholder.getsockname()[1]
    proxy = FaultProxy("127.0.0.1", dead_port)
    await proxy.start()
    try:
        reader, writer = await asyncio.open_connection(*proxy.address)
        with pytest.raises(ConnectionResetError):
            async with asyncio.timeout(5):
                await reader.read(1)
        writer.close()
    finally:
        await proxy.close()


def test_thread_api_from_blocking_code() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    with listener, ProxyThread("127.0.0.1", listener.getsockname()[1]) as proxy:
        client = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        conn, _ = listener.accept()
        with client, conn:
            client.sendall(b"GET /v1/data-channel/x HTTP/1.1\r\n")
            link = proxy.wait_link("/v1/data-channel/")
            assert link.path == "/v1/data-channel/x"
            assert conn.recv(100).startswith(b"GET")
            assert proxy.totals().up == 33
            assert proxy.reset("/v1/data-channel/") == 1
            with pytest.raises(ConnectionResetError):
                client.recv(1)
            assert proxy.links() == []


async def test_a_kept_alive_connection_is_named_by_its_upgrade() -> None:
    async def http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
        await writer.drain()
        while data := await reader.read(65536):
            writer.write(data)
        writer.close()

    async with proxied(http) as (proxy, _):
        reader, writer = await asyncio.open_connection(*proxy.address)
        writer.write(b"POST /v1/control-channel/mi-1 HTTP/1.1\r\n\r\n")
        await reader.readuntil(b"\r\n\r\n")
        assert [link.path for link in proxy.open_links()] == ["/v1/control-channel/mi-1"]
        writer.write(b"GET /v1/data-channel/s-1 HTTP/1.1\r\n\r\n")
        await reader.readuntil(b"\r\n\r\n")
        not_a_request = b"GET /not-a-request HTTP/1.1\r\n"  # upgraded: bytes, not a request
        writer.write(not_a_request)
        assert await read_exactly(reader, len(not_a_request)) == not_a_request
        assert [link.path for link in proxy.open_links()] == ["/v1/data-channel/s-1"]
        writer.close()
