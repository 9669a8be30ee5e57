"""Data-channel WebSockets with framing of our own.

On the server, aiohttp does what it does well: the HTTP upgrade and its checks. Once the upgrade
is agreed, the socket is taken over (``transport.set_protocol``, public asyncio API) by
:class:`WebSocketConnection`, which frames
with :mod:`openssm.protocol.websocket`: socket reads land straight in the message they become,
and a masked frame costs one join and one XOR pass. See DESIGN.md ("Data-channel WebSockets")
for the measurements behind this and for what aiohttp's framing costs per byte.

The dialing ends (``openssm start-session``, the plugin, and the agent) use :func:`dial` instead:
TCP, an HTTP CONNECT tunnel through a proxy when one is configured, TLS, and the upgrade of
:mod:`openssm.protocol.http1`, all on asyncio, so that neither imports aiohttp
(whose import alone took about a sixth of the client's time to a prompt; its compiled XOR is
loaded with the first large frame: see ``MASK``). It gets a
:class:`ClientWebSocket`: the same framing, with messages of this module's own
:class:`WsMessage`/:class:`WsMessageType`, whose values are aiohttp's, so ``==`` compares them alike.

The public surface is the part of aiohttp's WebSocket API that OpenSSM uses (``receive``,
``async for``, ``send_bytes``, ``send_str``, ``ping``, ``close``, ``closed``, ``exception``), with
aiohttp's own :class:`aiohttp.WSMessage` values (:class:`WebSocketConnection`) or this module's
(:class:`ClientWebSocket`), plus ``send_parts``.

Nothing can be lost in the takeover: on the server the socket is taken before the 101 response
goes out, and a WebSocket client sends nothing before it reads that response; on the client, the
data-channel protocol has the client speak first (the open frame), so nothing arrives before
the takeover either (and :func:`dial` hands on whatever came in with the 101 all the same).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import enum
import logging
import socket
import ssl
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final, NamedTuple, cast
from urllib.parse import unquote, urlsplit

from openssm.errors import OpenSSMError
from openssm.protocol import http1 as handshake
from openssm.protocol import websocket as codec
from openssm.transport.read_throttle import ReadThrottle

if TYPE_CHECKING:
    from aiohttp import WSMessage, web

log = logging.getLogger(__name__)


# Frames below this many bytes are masked in Python until aiohttp is loaded (see _lazy_mask).
LAZY_MASK_LIMIT: Final = 4096
_compiled: codec.MaskFunction | None = None


def _compiled_mask() -> codec.MaskFunction:
    """aiohttp's compiled XOR, from its wheels. Not public API: tests/unit/test_websocket_connection.py
    fails if an aiohttp upgrade moves it, rather than letting data channels fall back silently."""
    global _compiled
    if _compiled is None:
        _compiled = _load_compiled_mask()
    return _compiled


def _load_compiled_mask() -> codec.MaskFunction:
    """In a process without aiohttp (the client, the agent), its compiled XOR module alone: it needs
    nothing of the package, and loads in about 1 ms, where importing the package for it took 0.3 s
    of CPU (its client, connector and a default TLS context with the system's CA file), which the
    agent paid within its first bulk download. Where it is not found, aiohttp's own choice.
    (``importlib.util`` and ``pathlib`` are imported here: a client's prompt does not wait for them.)"""
    import importlib.machinery
    import importlib.util
    import pathlib

    if "aiohttp" not in sys.modules:
        package = importlib.util.find_spec("aiohttp")  # finds it, without importing it
        if package is not None and package.origin is not None:
            folder = pathlib.Path(package.origin).parent / "_websocket"
            for path in (folder / f"mask{suffix}" for suffix in importlib.machinery.EXTENSION_SUFFIXES):
                spec = importlib.util.spec_from_file_location("aiohttp._websocket.mask", path)
                if path.is_file() and spec is not None and spec.loader is not None:
                    module = importlib.util.module_from_spec(spec)
                    spec.loader.exec_module(module)
                    mask: codec.MaskFunction = module._websocket_mask_cython
                    return mask
    from aiohttp._websocket.helpers import websocket_mask

    return websocket_mask


def _lazy_mask(key: bytes, data: bytearray) -> None:
    """The client's XOR: it never imports aiohttp otherwise (see "Client start-up" in DESIGN.md), and
    its interactive frames (keystrokes, acks, the open frame) are small; the first large frame (bulk
    port data) loads aiohttp's compiled XOR, once."""
    if _compiled is None and len(data) < LAZY_MASK_LIMIT:
        codec.mask_python(key, data)
    else:
        _compiled_mask()(key, data)


# The server has imported aiohttp by now; the client and the agent have not, and should not have to.
MASK: codec.MaskFunction = _compiled_mask() if "aiohttp" in sys.modules else _lazy_mask

# send_messages writes a batch in slices of about this many bytes (one system call each).
WRITE_BATCH: Final = 256 * 1024
DEFAULT_HIGH_WATER: Final = 4 * 1024 * 1024  # unread bytes before the socket stops being read
# While its reads are paused, a connection pings its peer this often: a peer judging liveness by
# what it receives (the gateway's heartbeat: 30 s, then 15 s for an answer) must not take a
# connection that is only waiting for its consumer for a dead one.
PAUSED_PING_INTERVAL: Final = 10.0


class WsMessageType(enum.IntEnum):
    """Kinds of received messages: aiohttp's ``WSMsgType`` values, without importing aiohttp."""

    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    PING = 0x9
    PONG = 0xA
    CLOSE = 0x8
    CLOSING = 0x100
    CLOSED = 0x101
    ERROR = 0x102


class WsMessage(NamedTuple):
    """A received message, shaped as aiohttp's ``WSMessage`` (type, data, extra)."""

    type: WsMessageType
    data: Any
    extra: Any


class ConnectionClosed(OpenSSMError, ConnectionError):
    """A send on a connection that is closing or gone."""


class _FramedWebSocket(asyncio.BufferedProtocol):
    """One upgraded connection, framed by :mod:`openssm.protocol.websocket`. Its subclasses say
    what a received message is (aiohttp's ``WSMessage`` or this module's :class:`WsMessage`)."""

    def __init__(
        self,
        *,
        client: bool,
        max_message: int,
        heartbeat: float | None = None,
        close_timeout: float = 2.0,
        high_water: int = DEFAULT_HIGH_WATER,
        paused_ping_interval: float | None = None,
        read_buffer: int = codec.SCRATCH_SIZE,
    ) -> None:
        self._client = client
        self._paused_ping_interval = (
            PAUSED_PING_INTERVAL if paused_ping_interval is None else paused_ping_interval
        )
        self._paused_ping_handle: asyncio.TimerHandle | None = None
        # read_buffer: the socket's reads of small frames (larger ones get a buffer of their own).
        self._reader = codec.FrameReader(
            masked=not client, max_message=max_message, mask=MASK, scratch_size=read_buffer
        )
        self._heartbeat = heartbeat
        self._close_timeout = close_timeout
        self._throttle = ReadThrottle(high_water)
        self._transport: asyncio.Transport | None = None
        self._original: asyncio.BaseProtocol | None = None  # aiohttp's protocol, told when we end
        self._messages: collections.deque[tuple[Any, int]] = collections.deque()  # with sizes
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

    def _message(self, kind: WsMessageType, data: Any, extra: Any) -> Any:
        """A received message as the subclass's users expect it."""
        raise NotImplementedError

    # -- takeover ----------------------------------------------------------------------------------

    def take_over(self, transport: asyncio.BaseTransport) -> None:
        """Become ``transport``'s protocol (it keeps the previous protocol to hand back the end)."""
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
            self._queue(self._message(WsMessageType.BINARY, message.data, None), len(message.data))
        elif opcode == codec.OP_TEXT:
            try:
                text = bytes(message.data).decode()
            except UnicodeDecodeError:
                self._fail(codec.CLOSE_INVALID_DATA, ValueError("text message is not UTF-8"))
                return
            self._queue(self._message(WsMessageType.TEXT, text, None), len(message.data))
        elif opcode == codec.OP_PING:
            self._write_control(codec.OP_PONG, bytes(message.data))
        elif opcode == codec.OP_CLOSE:
            self._close_received = True
            code = codec.close_code(message.data)
            self.close_code = code if code is not None else 1005
            if not self._close_sent:
                self._write_control(codec.OP_CLOSE, codec.close_payload(code or codec.CLOSE_NORMAL))
                self._close_sent = True
            self._queue(
                self._message(WsMessageType.CLOSE, self.close_code, bytes(message.data[2:]).decode()), 0
            )
            self._close_transport()
        # Pongs only show the peer is alive, which any received byte already recorded.

    def _queue(self, message: Any, size: int) -> None:
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

    async def _receive(self, timeout: float | None = None) -> Any:
        """The next message; CLOSE once if the peer closed, then CLOSED for ever; ERROR once on a
        protocol violation (see :meth:`exception`)."""
        if self._waiter is not None:
            raise RuntimeError("receive() is already being awaited")  # as aiohttp: one reader
        while not self._messages:
            if self._lost.is_set():
                return self._message(WsMessageType.CLOSED, None, None)
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

    async def _next(self) -> Any:
        message = await self._receive()
        if message.type in (WsMessageType.CLOSE, WsMessageType.CLOSING, WsMessageType.CLOSED):
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

    async def send_messages(self, messages: Sequence[Sequence[codec.Buffer]]) -> None:
        """Binary messages, in order, each made of its parts, written together: a batch of small
        ones (a keystroke's echo and the ack queued before it) leaves in one system call and one
        TCP segment, so the peer wakes once for all of it. Large batches go in slices of
        ``WRITE_BATCH`` bytes, waiting for the socket between them as :meth:`send_parts` does."""
        pieces: list[codec.Buffer] = []
        size = 0
        for parts in messages:
            self._check_open()
            encoded = codec.encode(codec.OP_BINARY, parts, mask_key=self._key(), mask=MASK)
            pieces.extend(encoded)
            size += sum(len(piece) for piece in encoded)
            if size >= WRITE_BATCH:
                await self._write(pieces)
                pieces, size = [], 0
        if pieces:
            await self._write(pieces)

    async def send_bytes(self, data: codec.Buffer) -> None:
        await self._send(codec.OP_BINARY, (data,))

    async def send_str(self, text: str) -> None:
        await self._send(codec.OP_TEXT, (text.encode(),))

    async def ping(self, payload: bytes = b"") -> None:
        self._check_open()
        self._write_control(codec.OP_PING, payload)

    async def _send(self, opcode: int, parts: Sequence[codec.Buffer]) -> None:
        self._check_open()
        await self._write(codec.encode(opcode, parts, mask_key=self._key(), mask=MASK))

    async def _write(self, pieces: Sequence[codec.Buffer]) -> None:
        """Hand ``pieces`` to the transport at once, then wait while its buffer is full."""
        transport = self._check_open()
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
        self._queue(self._message(WsMessageType.ERROR, exc, None), 0)
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


class WebSocketConnection(_FramedWebSocket):
    """A connection aiohttp upgraded, made by :func:`accept` (the server's side); its messages are
    aiohttp's ``WSMessage``, as aiohttp's own WebSocket objects give them."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._make, self._kinds = _aiohttp_messages()

    def _message(self, kind: WsMessageType, data: Any, extra: Any) -> WSMessage:
        return cast("WSMessage", self._make(self._kinds[kind], data, extra))

    async def receive(self, timeout: float | None = None) -> WSMessage:
        """The next message; CLOSE once if the peer closed, then CLOSED for ever; ERROR once on a
        protocol violation (see :meth:`exception`)."""
        return cast("WSMessage", await self._receive(timeout))

    def __aiter__(self) -> WebSocketConnection:
        return self

    async def __anext__(self) -> WSMessage:
        return cast("WSMessage", await self._next())


class ClientWebSocket(_FramedWebSocket):
    """A connection :func:`dial` opened; its messages are this module's :class:`WsMessage`."""

    def _message(self, kind: WsMessageType, data: Any, extra: Any) -> WsMessage:
        return WsMessage(kind, data, extra)

    async def receive(self, timeout: float | None = None) -> WsMessage:
        """The next message; CLOSE once if the peer closed, then CLOSED for ever; ERROR once on a
        protocol violation (see :meth:`exception`)."""
        return cast(WsMessage, await self._receive(timeout))

    def __aiter__(self) -> ClientWebSocket:
        return self

    async def __anext__(self) -> WsMessage:
        return cast(WsMessage, await self._next())

    def feed(self, data: bytes) -> None:
        """Bytes that arrived before the takeover (with the upgrade's answer), read first."""
        view = memoryview(data)
        while view:
            buffer = self.get_buffer(len(view))
            size = min(len(buffer), len(view))
            buffer[:size] = view[:size]
            view = view[size:]
            self.buffer_updated(size)


def _aiohttp() -> Any:
    """aiohttp, imported where the server uses it (never by the client or the agent)."""
    import aiohttp

    return aiohttp


_aiohttp_vocabulary: tuple[Any, dict[WsMessageType, Any]] | None = None


def _aiohttp_messages() -> tuple[Any, dict[WsMessageType, Any]]:
    """aiohttp's WSMessage class and its WSMsgType member for each :class:`WsMessageType`."""
    global _aiohttp_vocabulary
    if _aiohttp_vocabulary is None:
        aiohttp = _aiohttp()
        _aiohttp_vocabulary = (
            aiohttp.WSMessage,
            {kind: aiohttp.WSMsgType(kind.value) for kind in WsMessageType},
        )
    return _aiohttp_vocabulary


async def accept(
    request: web.Request,
    *,
    max_message: int,
    heartbeat: float | None,
    close_timeout: float = 2.0,
    read_buffer: int = codec.SCRATCH_SIZE,
) -> WebSocketConnection | web.StreamResponse:
    """Upgrade ``request``: the connection, or the error response to return when it is not a
    valid WebSocket upgrade.

    The handler serves the connection, closes it, and returns ``connection.response`` (aiohttp's
    handshake response: the 101 went out through it, and it has nothing more to send).
    """
    from aiohttp import web

    upgrade = web.WebSocketResponse(autoping=False, heartbeat=None, compress=False, timeout=0.1)
    if not upgrade.can_prepare(request).ok:
        return web.Response(status=400, text="Expected a WebSocket upgrade request")
    transport = request.transport
    if transport is None or transport.is_closing():
        return web.Response(status=400, text="Connection already closed")
    connection = WebSocketConnection(
        client=False,
        max_message=max_message,
        heartbeat=heartbeat,
        close_timeout=close_timeout,
        read_buffer=read_buffer,
    )
    connection.response = upgrade
    connection.take_over(transport)  # before the 101 goes out: see the module docstring
    await upgrade.prepare(request)
    return connection


# -- the client's own dial ---------------------------------------------------------------------------


class DialError(OpenSSMError, ConnectionError):
    """The proxy or the server did not let us through (a refused CONNECT or upgrade); ``status``:
    the HTTP status of the refusal, when there was one."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ResponseReader(asyncio.Protocol):
    """Collects what arrives until a response head is complete; keeps whatever follows it (and
    reads a response body: :mod:`openssm.transport.http_exchange`)."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._lost: BaseException | None = None
        self._eof = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.received += data
        self._wake()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = exc or ConnectionResetError("the connection closed during the handshake")
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def response_head(self) -> handshake.ResponseHead:
        """The next response head (consumed from :attr:`received`)."""
        while True:
            parsed = handshake.parse_response_head(self.received)
            if parsed is not None:
                head, size = parsed
                del self.received[:size]
                return head
            if self._lost is not None or self._eof:
                raise ConnectionResetError("the connection closed during the handshake")
            await self._more()

    async def response_body(self, head: handshake.ResponseHead, limit: int) -> bytes:
        """The body of the response whose ``head`` was read (at most ``limit`` bytes)."""
        body = handshake.BodyReader(head, limit)
        while True:
            if self.received:
                body.feed(bytes(self.received))
                self.received.clear()
            if body.done:
                return body.body
            if self._lost is not None or self._eof:
                body.eof()
                return body.body
            await self._more()

    async def _more(self) -> None:
        """Until more bytes arrive or the connection ends."""
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None


def _proxy_headers(proxy: str) -> list[tuple[str, str]]:
    parts = urlsplit(proxy)
    if not parts.username:
        return []
    pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
    return [("Proxy-Authorization", "Basic " + base64.b64encode(pair).decode("ascii"))]


async def open_stream(
    host: str, port: int, *, tls: ssl.SSLContext | None, proxy: str | None
) -> tuple[asyncio.Transport, ResponseReader]:
    """A connection to ``host:port`` (TLS if ``tls``), through an HTTP CONNECT tunnel if ``proxy``."""
    loop = asyncio.get_running_loop()
    if proxy is None:
        transport, reader = await loop.create_connection(
            ResponseReader, host, port, ssl=tls, server_hostname=host if tls else None
        )
        return transport, reader
    parts = urlsplit(proxy)
    if parts.scheme.lower() != "http" or not parts.hostname:
        raise DialError(f"unsupported proxy {proxy!r}: only http:// proxies are supported")
    transport, reader = await loop.create_connection(ResponseReader, parts.hostname, parts.port or 80)
    try:
        target = handshake.authority(host, port)
        transport.write(handshake.connect_request(target, _proxy_headers(proxy)))
        try:
            handshake.check_connect(await reader.response_head())
        except handshake.HandshakeError as exc:
            raise DialError(str(exc)) from exc
        if reader.received:
            raise DialError("the proxy sent data before the tunnel was used")
        if tls is not None:
            upgraded = await loop.start_tls(transport, reader, tls, server_hostname=host)
            if upgraded is None:  # pragma: no cover - only for protocols that refuse TLS
                raise DialError("TLS could not be started through the proxy")
            transport = upgraded
        return transport, reader
    except BaseException:
        transport.close()
        raise


async def dial(
    url: str,
    *,
    max_message: int,
    tls: ssl.SSLContext | None = None,
    proxy: str | None = None,
    headers: Sequence[tuple[str, str]] = (),
    heartbeat: float | None = None,
    close_timeout: float = 2.0,
    paused_ping_interval: float | None = None,
    read_buffer: int = codec.SCRATCH_SIZE,
) -> ClientWebSocket:
    """Open ``url`` (``ws://`` or ``wss://``, or http(s):// as aiohttp allows) and upgrade it; a
    secure URL uses ``tls`` (default: the system's roots).

    ``proxy`` (``http://[user:pass@]host:port``) is reached with CONNECT for both schemes, as
    Go's dialer (and so AWS's plugin) does. Errors: ``OSError`` (refused, reset, TLS),
    :class:`DialError` (the proxy or the server said no), ``TimeoutError`` from the caller's timeout.
    """
    options: dict[str, Any] = {
        "max_message": max_message,
        "heartbeat": heartbeat,
        "close_timeout": close_timeout,
        "paused_ping_interval": paused_ping_interval,
        "read_buffer": read_buffer,
    }
    parts = urlsplit(url)
    secure = {"ws": False, "http": False, "wss": True, "https": True}.get(parts.scheme.lower())
    if secure is None or not parts.hostname:
        raise DialError(f"not a ws:// or wss:// URL: {url!r}")
    default_port = 443 if secure else 80
    port = parts.port or default_port
    if secure and tls is None:
        tls = ssl.create_default_context()
    transport, reader = await open_stream(parts.hostname, port, tls=tls if secure else None, proxy=proxy)
    try:
        raw = transport.get_extra_info("socket")
        if raw is not None and raw.family in (socket.AF_INET, socket.AF_INET6):
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # keystrokes go out at once
        key = handshake.new_key()
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        host = handshake.authority(parts.hostname, port, default_port)
        transport.write(handshake.upgrade_request(host, target, key, headers))
        head = await reader.response_head()
        try:
            handshake.check_upgrade(head, key)
        except handshake.HandshakeError as exc:
            raise DialError(str(exc), exc.status) from exc
        connection = ClientWebSocket(client=True, **options)
        connection.take_over(transport)
        if reader.received:
            connection.feed(bytes(reader.received))
        return connection
    except BaseException:
        transport.close()
        raise
