"""A socket connection read in the chunks the event loop received, for the port-forwarding relay.

``asyncio.StreamReader`` appends every received chunk to one bytearray and copies it out again on
``read``: two passes over each forwarded byte, about a sixth of an endpoint's CPU at a few hundred
MiB/s. :class:`TcpConnection` reads the socket straight into buffers of its own
(``asyncio.BufferedProtocol``; a plain protocol would get each read as a copy in new ``bytes``)
and hands the filled regions on as read-only views, which it never writes again: smux queues them
uncopied. A read under 64 KiB is copied out instead and the buffer let go, so a trickling or idle
connection holds none. Back-pressure applies both ways: it stops reading the socket while more than
``high_water`` bytes wait unread, and ``drain`` waits while the transport's write buffer is full.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from typing import Final, cast

from openssm.protocol.buffers import receive_buffer
from openssm.transport.read_throttle import ReadThrottle

DEFAULT_HIGH_WATER: Final = 1024 * 1024
# Reads go into buffers of this size; one is replaced once less than MIN_READ_ROOM is left in it.
# Large, because every read costs a round of Python work (a wake-up, smux frames, a send step):
# under load reads filled 256 KiB buffers every time, and 1 MiB ones cut the forwarding processes'
# median CPU per GiB by 2-5 % (interleaved runs of bench/bench_port_throughput.py).
READ_BUFFER_SIZE: Final = 1024 * 1024
MIN_READ_ROOM: Final = 64 * 1024
# Reads below this are copied out, so that their buffer is reused: a view would pin a whole read
# buffer for a few bytes. An interactive or trickling connection thus never holds a buffer; only
# one moving bulk data does (until a small read, its EOF or its end).
SMALL_READ: Final = MIN_READ_ROOM

ConnectionHandler = Callable[["TcpConnection"], None]


class TcpConnection(asyncio.BufferedProtocol):
    """One connection (TCP or Unix socket). Create through :func:`open_connection` or a server."""

    def __init__(
        self, *, high_water: int = DEFAULT_HIGH_WATER, on_open: ConnectionHandler | None = None
    ) -> None:
        self._throttle = ReadThrottle(high_water)
        self._on_open = on_open
        self._transport: asyncio.Transport | None = None
        self._chunks: collections.deque[bytes | memoryview] = collections.deque()
        # The current read buffer; regions before _read_offset were handed out and stay as read.
        self._read_buffer: bytearray | None = None
        self._read_offset = 0
        self._eof = False
        self._error: BaseException | None = None
        self._read_waiter: asyncio.Future[None] | None = None
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # -- asyncio.Protocol ----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's do not subclass asyncio.Transport, so no isinstance check).
        self._transport = self._throttle.transport = cast(asyncio.Transport, transport)
        if self._on_open is not None:
            self._on_open(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._read_buffer is None or len(self._read_buffer) - self._read_offset < MIN_READ_ROOM:
            self._read_buffer = receive_buffer(READ_BUFFER_SIZE)
            self._read_offset = 0
        return memoryview(self._read_buffer)[self._read_offset :]

    def buffer_updated(self, nbytes: int) -> None:
        assert self._read_buffer is not None
        start = self._read_offset
        region = memoryview(self._read_buffer)[start : start + nbytes]
        if nbytes < SMALL_READ:
            data: bytes | memoryview = bytes(region)
            # Let go of it: views handed out earlier keep it alive for as long as they need.
            self._read_buffer = None
        else:
            data = region.toreadonly()
            self._read_offset = start + nbytes
        self._chunks.append(data)
        self._throttle.added(len(data))
        self._wake(self._read_waiter)

    def eof_received(self) -> bool:
        self._eof = True
        self._read_buffer = None
        self._wake(self._read_waiter)
        return True  # keep our sending direction open: the peer only half-closed

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        self._read_buffer = None
        if exc is not None and self._error is None:
            self._error = exc
        self._wake(self._read_waiter)
        self._write_paused = False
        self._wake(self._drain_waiter)
        if not self._closed.done():
            self._closed.set_result(None)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake(self._drain_waiter)

    # -- reading ---------------------------------------------------------------------------------------

    async def read(self, max_bytes: int) -> bytes:
        """At least one byte and at most ``max_bytes``, waiting for them; b"" at EOF.
        Raises the connection's error if it broke with data unread."""
        parts = await self.read_parts(max_bytes)
        if len(parts) == 1 and isinstance(parts[0], bytes):
            return parts[0]
        return b"".join(parts)

    async def read_parts(self, max_bytes: int) -> list[bytes | memoryview]:
        """As :meth:`read`, but the chunks as received, not joined; [] at EOF. They are ``bytes`` or
        read-only views of buffers that are never written again: safe to keep."""
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self._eof:
                return []
            self._read_waiter = asyncio.get_running_loop().create_future()
            try:
                await self._read_waiter
            finally:
                self._read_waiter = None
        parts = self._take(max_bytes)
        self._throttle.taken(sum(map(len, parts)))
        return parts

    def _take(self, max_bytes: int) -> list[bytes | memoryview]:
        parts: list[bytes | memoryview] = []
        room = max_bytes
        while self._chunks and room:
            head = self._chunks[0]
            if len(head) <= room:
                parts.append(self._chunks.popleft())
                room -= len(head)
            else:
                view = memoryview(head)
                parts.append(view[:room])
                self._chunks[0] = view[room:]
                room = 0
        return parts

    # -- writing ---------------------------------------------------------------------------------------

    def _writable(self) -> asyncio.Transport:
        if self._transport is None or self._transport.is_closing():
            raise ConnectionResetError("connection closed")
        return self._transport

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._writable().write(data)

    def writelines(self, parts: list[bytes | memoryview]) -> None:
        """Several buffers in one go: a vectored write where the loop has one (uvloop, Python
        3.12+), else one write each, since the fallback joins them (a copy of every byte)."""
        transport = self._writable()
        if type(transport).writelines is asyncio.WriteTransport.writelines:
            for part in parts:
                transport.write(part)
        else:
            transport.writelines(parts)

    async def drain(self) -> None:
        """Wait while the transport's write buffer is above its high-water mark."""
        while self._write_paused:
            self._writable()
            self._drain_waiter = asyncio.get_running_loop().create_future()
            try:
                await self._drain_waiter
            finally:
                self._drain_waiter = None
        self._writable()

    def can_write_eof(self) -> bool:
        return self._transport is not None and self._transport.can_write_eof()

    def write_eof(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write_eof()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        """Drop the connection now, discarding unsent data."""
        if self._transport is not None:
            self._transport.abort()

    async def wait_closed(self) -> None:
        if self._transport is None:
            return
        await self._closed

    @staticmethod
    def _wake(waiter: asyncio.Future[None] | None) -> None:
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


async def open_connection(host: str, port: int, *, high_water: int = DEFAULT_HIGH_WATER) -> TcpConnection:
    loop = asyncio.get_running_loop()
    _transport, connection = await loop.create_connection(
        lambda: TcpConnection(high_water=high_water), host, port
    )
    return connection


async def start_server(
    handler: ConnectionHandler,
    host: str,
    port: int,
    *,
    high_water: int = DEFAULT_HIGH_WATER,
    reuse_address: bool = True,
) -> asyncio.Server:
    """Listen on ``host:port``; ``handler`` is called with each accepted connection."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: TcpConnection(high_water=high_water, on_open=handler),
        host,
        port,
        reuse_address=reuse_address,
    )


async def start_unix_server(
    handler: ConnectionHandler, path: str, *, high_water: int = DEFAULT_HIGH_WATER
) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    return await loop.create_unix_server(lambda: TcpConnection(high_water=high_water, on_open=handler), path)


CLOSE_TIMEOUT: Final = 10.0


async def close_quietly(connection: TcpConnection, timeout: float = CLOSE_TIMEOUT) -> None:
    """Close after flushing what was written; a peer that stops reading gets reset after ``timeout``."""
    connection.close()
    try:
        async with asyncio.timeout(timeout):
            await connection.wait_closed()
    except TimeoutError:
        connection.abort()
    except OSError:
        pass
