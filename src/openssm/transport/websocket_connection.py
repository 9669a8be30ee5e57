"""Data-channel WebSockets with framing of our own, on connections aiohttp opened.

aiohttp still does what it does well on data channels: dialing (proxies, TLS), the HTTP upgrade
and its checks, on both the client and the server side. Once the upgrade is agreed, the socket is
taken over (``transport.set_protocol``, public asyncio API) by :class:`WebSocketConnection`, which
frames with :mod:`openssm.protocol.websocket`: socket reads land straight in the message they
become, and a masked frame costs one join and one XOR pass. See DESIGN.md ("Data-channel
WebSockets") for the measurements behind this and for what aiohttp's framing costs per byte.

The public surface is the part of aiohttp's WebSocket API that OpenSSM uses (``receive``,
``async for``, ``send_bytes``, ``send_str``, ``ping``, ``close``, ``closed``, ``exception``), with
aiohttp's own :class:`aiohttp.WSMessage` values, plus :meth:`WebSocketConnection.send_parts`.

Nothing can be lost in the takeover: on the server the socket is taken before the 101 response
goes out, and a WebSocket client sends nothing before it reads that response; on the client, the
data-channel protocol has the client speak first (the open frame), so nothing arrives before
the takeover either.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Any, Final, cast

import aiohttp
from aiohttp import WSMessage, WSMsgType, web

from openssm.errors import OpenSSMError
from openssm.protocol import websocket as codec
from openssm.transport.read_throttle import ReadThrottle

log = logging.getLogger(__name__)

try:
    # aiohttp's XOR, compiled in its wheels. Not public API: tests/unit/test_websocket_connection.py
    # fails if an aiohttp upgrade moves it, rather than letting data channels fall back silently.
    from aiohttp._websocket.helpers import websocket_mask

    MASK: codec.MaskFunction = websocket_mask
except ImportError:  # pragma: no cover
    MASK = codec.mask_python

DEFAULT_HIGH_WATER: Final = 4 * 1024 * 1024  # unread bytes before the socket stops being read
# While its reads are paused, a connection pings its peer this often: a peer judging liveness by
# what it receives (the gateway's heartbeat: 30 s, then 15 s for an answer) must not take a
# connection that is only waiting for its consumer for a dead one.
PAUSED_PING_INTERVAL: Final = 10.0
_CLOSED_MESSAGE: Final = WSMessage(WSMsgType.CLOSED, None, None)


class ConnectionClosed(OpenSSMError, ConnectionError):
    """A send on a connection that is closing or gone."""


class WebSocketConnection(asyncio.BufferedProtocol):
    """One upgraded connection. Made by :func:`accept` (server) or :func:`connect` (client)."""

    def __init__(
        self,
        *,
        client: bool,
        max_message: int,
        heartbeat: float | None = None,
        close_timeout: float = 2.0,
        high_water: int = DEFAULT_HIGH_WATER,
        paused_ping_interval: float | None = None,
    ) -> None:
        self._client = client
        self._paused_ping_interval = (
            PAUSED_PING_INTERVAL if paused_ping_interval is None else paused_ping_interval
        )
        self._paused_ping_handle: asyncio.TimerHandle | None = None
        self._reader = codec.FrameReader(masked=not client, max_message=max_message, mask=MASK)
        self._heartbeat = heartbeat
        self._close_timeout = close_timeout
        self._throttle = ReadThrottle(high_water)
        self._transport: asyncio.Transport | None = None
        self._original: asyncio.BaseProtocol | None = None  # aiohttp's protocol, told when we end
        self._messages: collections.deque[tuple[WSMessage, int]] = collections.deque()  # with sizes
        self._waiter: asyncio.Future[None] | None = None
        self._write_ready = asyncio.Event()
        self._write_ready.set()
        self._close_sent = False
        self._close_received = False
        self._lost = asyncio.Event()  # the connection has ended
        self._exception: BaseException | None = None
        self._last_received = time.monotonic()
        self._heartbeat_handle: asyncio.TimerHandle | None = None
        self._ping_sent_at = 0.0
        self.close_code: int | None = None
        self.response: web.StreamResponse | None = None  # server side: what the handler returns
        self.response_keeper: object = None  # client side: aiohttp's handshake response, kept alive

    # -- takeover ----------------------------------------------------------------------------------

    def take_over(self, transport: asyncio.BaseTransport) -> None:
        """Become ``transport``'s protocol (it keeps its aiohttp protocol to hand back the end)."""
        self._original = transport.get_protocol()
        self._transport = self._throttle.transport = cast(asyncio.Transport, transport)
        transport.set_protocol(self)
        if not self._transport.is_reading():  # aiohttp may have paused it for its own buffers
            self._transport.resume_reading()
        self._schedule_heartbeat()

    # -- asyncio.BufferedProtocol ------------------------------------------------------------------

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._reader.buffer()

    def buffer_updated(self, nbytes: int) -> None:
        self._last_received = time.monotonic()
        try:
            messages = self._reader.filled(nbytes)
        except codec.WebSocketProtocolError as exc:
            self._fail(exc.code, exc)
            return
        for message in messages:
            self._on_message(message)

    def eof_received(self) -> bool:
        return False  # close the transport; receive() then reports CLOSED

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost.set()
        self._write_ready.set()
        for handle in (self._heartbeat_handle, self._paused_ping_handle):
            if handle is not None:
                handle.cancel()
        self._wake()
        if self._original is not None:
            original, self._original = self._original, None
            original.connection_lost(exc)

    def pause_writing(self) -> None:
        self._write_ready.clear()

    def resume_writing(self) -> None:
        self._write_ready.set()

    # -- receiving -------------------------------------------------------------------------------

    def _on_message(self, message: codec.Message) -> None:
        opcode = message.opcode
        if opcode == codec.OP_BINARY:
            self._queue(WSMessage(WSMsgType.BINARY, message.data, None), len(message.data))
        elif opcode == codec.OP_TEXT:
            try:
                text = bytes(message.data).decode()
            except UnicodeDecodeError:
                self._fail(codec.CLOSE_INVALID_DATA, ValueError("text message is not UTF-8"))
                return
            self._queue(WSMessage(WSMsgType.TEXT, text, None), len(message.data))
        elif opcode == codec.OP_PING:
            self._write_control(codec.OP_PONG, bytes(message.data))
        elif opcode == codec.OP_CLOSE:
            self._close_received = True
            code = codec.close_code(message.data)
            self.close_code = code if code is not None else 1005
            if not self._close_sent:
                self._write_control(codec.OP_CLOSE, codec.close_payload(code or codec.CLOSE_NORMAL))
                self._close_sent = True
            self._queue(WSMessage(WSMsgType.CLOSE, self.close_code, bytes(message.data[2:]).decode()), 0)
            self._close_transport()
        # Pongs only show the peer is alive, which any received byte already recorded.

    def _queue(self, message: WSMessage, size: int) -> None:
        self._messages.append((message, size))
        self._throttle.added(size)
        if self._throttle.paused and self._paused_ping_handle is None:
            self._schedule_paused_ping()
        self._wake()

    def _schedule_paused_ping(self) -> None:
        self._paused_ping_handle = asyncio.get_running_loop().call_later(
            self._paused_ping_interval, self._ping_while_paused
        )

    def _ping_while_paused(self) -> None:
        """Reads are paused (the consumer is behind), so nothing the peer sends, pongs included, is
        seen: tell the peer we are alive instead, for as long as the pause lasts."""
        self._paused_ping_handle = None
        if self.closed or not self._throttle.paused:
            return
        self._write_control(codec.OP_PING, b"")
        self._schedule_paused_ping()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def receive(self, timeout: float | None = None) -> WSMessage:
        """The next message; CLOSE once if the peer closed, then CLOSED for ever; ERROR once on a
        protocol violation (see :meth:`exception`)."""
        if self._waiter is not None:
            raise RuntimeError("receive() is already being awaited")  # as aiohttp: one reader
        while not self._messages:
            if self._lost.is_set():
                return _CLOSED_MESSAGE
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                if timeout is None:  # the relay's case: no timer per message
                    await self._waiter
                else:
                    async with asyncio.timeout(timeout):
                        await self._waiter
            finally:
                self._waiter = None
        message, size = self._messages.popleft()
        self._throttle.taken(size)
        return message

    def __aiter__(self) -> WebSocketConnection:
        return self

    async def __anext__(self) -> WSMessage:
        message = await self.receive()
        if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
            raise StopAsyncIteration
        return message

    def exception(self) -> BaseException | None:
        return self._exception

    @property
    def closed(self) -> bool:
        return (
            self._close_sent or self._lost.is_set() or self._transport is None or self._transport.is_closing()
        )

    # -- sending ---------------------------------------------------------------------------------

    async def send_parts(self, parts: Sequence[codec.Buffer]) -> None:
        """One binary message made of ``parts`` (joined on the wire, not here when unmasked)."""
        await self._send(codec.OP_BINARY, parts)

    async def send_bytes(self, data: codec.Buffer) -> None:
        await self._send(codec.OP_BINARY, (data,))

    async def send_str(self, text: str) -> None:
        await self._send(codec.OP_TEXT, (text.encode(),))

    async def ping(self, payload: bytes = b"") -> None:
        self._check_open()
        self._write_control(codec.OP_PING, payload)

    async def _send(self, opcode: int, parts: Sequence[codec.Buffer]) -> None:
        transport = self._check_open()
        pieces = codec.encode(opcode, parts, mask_key=self._key(), mask=MASK)
        if len(pieces) == 1:
            transport.write(pieces[0])
        else:
            transport.writelines(pieces)
        if not self._write_ready.is_set():
            await self._write_ready.wait()
            if self._lost.is_set():
                raise ConnectionClosed("connection lost")

    def _check_open(self) -> asyncio.Transport:
        if self.closed or self._transport is None:
            raise ConnectionClosed("the WebSocket is closed")
        return self._transport

    def _key(self) -> bytes | None:
        return codec.new_mask_key() if self._client else None

    def _write_control(self, opcode: int, payload: bytes) -> None:
        transport = self._transport
        if transport is None or transport.is_closing() or self._close_sent:
            return
        for piece in codec.encode(opcode, (payload,), mask_key=self._key(), mask=MASK):
            transport.write(piece)

    # -- closing ---------------------------------------------------------------------------------

    async def close(self, *, code: int = codec.CLOSE_NORMAL, message: bytes = b"") -> bool:
        """Send a close frame, give the peer ``close_timeout`` to answer or hang up, then drop the
        connection. False if it was already closing."""
        if self._close_sent or self._lost.is_set():
            self._close_transport()
            return False
        self._write_control(codec.OP_CLOSE, codec.close_payload(code, message.decode(errors="replace")))
        self._close_sent = True
        self.close_code = code
        if not self._close_received:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lost.wait(), self._close_timeout)
        self._close_transport()
        return True

    def _close_transport(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()

    def _fail(self, code: int, exc: BaseException) -> None:
        """A protocol violation: say why in a close frame, report ERROR, drop the connection."""
        log.debug("WebSocket protocol error: %s", exc)
        self._exception = exc
        if not self._close_sent:
            self._write_control(codec.OP_CLOSE, codec.close_payload(code, str(exc)))
            self._close_sent = True
        self.close_code = code
        self._queue(WSMessage(WSMsgType.ERROR, exc, None), 0)
        self._close_transport()

    # -- heartbeat -------------------------------------------------------------------------------

    def _schedule_heartbeat(self) -> None:
        if self._heartbeat is not None and self._transport is not None:
            self._heartbeat_handle = asyncio.get_running_loop().call_later(self._heartbeat, self._beat)

    def _beat(self) -> None:
        """Every ``heartbeat`` seconds without a byte from the peer, ping it; a peer that sends
        nothing (no pong either) within half an interval is gone, as aiohttp's heartbeat judges.
        Not while reads are paused: the peer's bytes then wait unread, and silence means nothing."""
        assert self._heartbeat is not None
        if self.closed:
            return
        loop = asyncio.get_running_loop()
        if self._throttle.paused:
            self._heartbeat_handle = loop.call_later(self._heartbeat, self._beat)
            return
        quiet = time.monotonic() - self._last_received
        if quiet < self._heartbeat:
            self._heartbeat_handle = loop.call_later(self._heartbeat - quiet, self._beat)
            return
        self._ping_sent_at = time.monotonic()
        self._write_control(codec.OP_PING, b"")
        self._heartbeat_handle = loop.call_later(self._heartbeat / 2, self._check_pong)

    def _check_pong(self) -> None:
        assert self._heartbeat is not None
        if self.closed:
            return
        if self._last_received < self._ping_sent_at and not self._throttle.paused:
            log.debug("WebSocket peer answered no ping within %.1f s: dropping it", self._heartbeat / 2)
            self._exception = TimeoutError("the peer answered no ping")
            if self._transport is not None:
                self._transport.abort()
            return
        self._schedule_heartbeat()


async def accept(
    request: web.Request, *, max_message: int, heartbeat: float | None, close_timeout: float = 2.0
) -> WebSocketConnection | web.StreamResponse:
    """Upgrade ``request``: the connection, or the error response to return when it is not a
    valid WebSocket upgrade.

    The handler serves the connection, closes it, and returns ``connection.response`` (aiohttp's
    handshake response: the 101 went out through it, and it has nothing more to send).
    """
    handshake = web.WebSocketResponse(autoping=False, heartbeat=None, compress=False, timeout=0.1)
    if not handshake.can_prepare(request).ok:
        return web.Response(status=400, text="Expected a WebSocket upgrade request")
    transport = request.transport
    if transport is None or transport.is_closing():
        return web.Response(status=400, text="Connection already closed")
    connection = WebSocketConnection(
        client=False, max_message=max_message, heartbeat=heartbeat, close_timeout=close_timeout
    )
    connection.response = handshake
    connection.take_over(transport)  # before the 101 goes out: see the module docstring
    await handshake.prepare(request)
    return connection


class _TransportKeeper(aiohttp.ClientWebSocketResponse):
    """aiohttp's client WebSocket response, remembering the transport it was handed.

    ``ClientSession(ws_response_class=...)`` is aiohttp's documented hook for this class; the
    writer it receives carries the connection's transport, which :func:`connect` takes over.
    """

    def __init__(self, reader: Any, writer: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(reader, writer, *args, **kwargs)
        self.taken_transport: asyncio.BaseTransport = writer.transport


async def connect(
    session: aiohttp.ClientSession,
    url: str,
    *,
    max_message: int,
    heartbeat: float | None = None,
    close_timeout: float = 2.0,
    paused_ping_interval: float | None = None,
    **ws_connect: Any,
) -> WebSocketConnection:
    """Dial and upgrade with aiohttp (headers, ssl, proxy... in ``ws_connect``), then take over.

    The dial goes through ``session``'s connector (its pool, limits and TLS settings) by way of a
    short-lived session that only adds the response class the takeover needs.
    """
    dialer = aiohttp.ClientSession(
        connector=session.connector,
        connector_owner=False,
        timeout=session.timeout,
        trust_env=session.trust_env,
        ws_response_class=_TransportKeeper,
    )
    async with dialer:
        response = await dialer.ws_connect(url, autoping=False, heartbeat=None, compress=0, **ws_connect)
    assert isinstance(response, _TransportKeeper)
    connection = WebSocketConnection(
        client=True,
        max_message=max_message,
        heartbeat=heartbeat,
        close_timeout=close_timeout,
        paused_ping_interval=paused_ping_interval,
    )
    connection.response_keeper = response  # aiohttp closes the socket when its response is collected
    connection.take_over(response.taken_transport)
    return connection
