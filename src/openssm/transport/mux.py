"""asyncio adapter over the sans-I/O smux core (:mod:`openssm.protocol.smux`).

A :class:`MuxSession` sits on one data channel: bytes the peer sent (Output payloads, one
continuous stream) go in through :meth:`MuxSession.feed`; bytes for the peer come out through the
``send`` coroutine, one message at a time, as the pieces they were queued in (smux headers and
views of the written data: a transport that builds a frame around them copies them once; one that
needs contiguous bytes wraps its sender in :func:`joined`). One sender task calls it, so frames
never interleave. :func:`pipe` bridges a :class:`MuxStream` and a local connection, half-closing
each direction on its own.

Back-pressure: ``send`` is awaited, and writers wait while much is queued for it. On the
receiving side, callers should ``await wait_receive_capacity()`` before feeding the next message
(holding the data channel's ack back), as xtaci/smux stops reading its transport when its receive
buffer is full. A caller or peer ignoring that is cut off at ``SmuxConfig.receive_hard_limit``.

Wiring to a data channel (plugin side shown; the agent side uses ``is_client=False`` and
``accept_stream``)::

    mux = MuxSession(joined(send_output_payload), is_client=True, version=1)  # v1 with AWS's programs
    # for each Output payload, in sequence order:
    await mux.wait_receive_capacity()
    mux.feed(payload)
    # for each local connection (openssm.transport.tcp_connection):
    await pipe(await mux.open_stream(), connection)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any

from openssm.errors import OpenSSMError
from openssm.protocol.datachannel import (
    FAST_PATH_ACCEPTED,
    FAST_PATH_PAYLOAD,
    FAST_PATH_PROPERTY,
    FAST_PATH_REORDER_LIMIT,
    FAST_PATH_VERSION,
)
from openssm.protocol.smux import (
    DataReceived,
    Event,
    SmuxConfig,
    SmuxError,
    SmuxProtocolError,
    SmuxSession,
    StreamOpened,
    StreamReset,
    WindowUpdated,
)
from openssm.transport.tcp_connection import TcpConnection, close_quietly

__all__ = [
    "FAST_MUX_PAYLOAD",
    "FAST_MUX_PROPERTY",
    "FAST_MUX_VERSION",
    "FAST_PATH_ACCEPTED",
    "FAST_PATH_PAYLOAD",
    "FAST_PATH_PROPERTY",
    "FAST_PATH_REORDER_LIMIT",
    "FAST_PATH_VERSION",
    "MuxClosedError",
    "MuxSession",
    "MuxStream",
    "MuxStreamResetError",
    "SendParts",
    "fast_mux_config",
    "joined",
    "pipe",
]

DEFAULT_READ_SIZE = 65536
# Writers pause while more than this waits for send.
SEND_QUEUE_HIGH_WATER = 1024 * 1024
# About this many bytes are handed to the core per write step, so streams sharing the session
# interleave: a writer waits between steps while the send queue is over its high-water mark, so
# another stream's bytes queue behind at most one step more. Each step is a whole number of frames
# (see MuxSession._write_step): a step one frame and a few bytes long would follow every full
# frame with a runt, doubling the per-frame work.
WRITE_STEP = 64 * 1024
# Where messages carry this much (the fast path), steps are this large: each step costs a few
# dozen Python calls, a measurable share of a bulk sender's CPU at one 64 KiB frame a step, and a
# link that fast drains the larger step in no time. With AWS's programs (1 KiB messages, a few
# MiB/s) steps stay small, so an interactive stream beside a bulk one does not wait longer.
LARGE_WRITE_STEP = 256 * 1024
# A sender that has just sent a message of at least BULK_MESSAGE bytes is moving bulk data. Before
# it sends a message that is not full, it lets the event loop turn COALESCE_TURNS times, so that the
# next local read (one turn to arrive, one for its writer to queue it) joins the message. Fewer,
# fuller messages cut the per-message work in all three processes (a message and its ack cost
# several hundred Python calls end to end): messages per MiB 2.0 → 1.3, CPU per GiB -6 to -9 %.
# Interactive traffic never sends a message that large, so it never waits.
BULK_MESSAGE = 256 * 1024
COALESCE_TURNS = 2


# When both ends are OpenSSM they use smux v2 (per-stream windows: one slow connection cannot stall
# the others) and larger data-channel payloads (the AWS programs' 1024-byte messages cap throughput
# at a few MiB/s). The agent offers it with this key in the Port handshake Properties (AWS's plugin
# ignores unknown keys); a client that understands it opens with v2 frames, and the agent takes the
# version from the first smux frame it receives (AWS's plugin always speaks v1).
FAST_MUX_PROPERTY = "openssmMuxVersion"
FAST_MUX_VERSION = 2
# Output payload size with a client that takes v2 but not the fast path below (OpenSSM before it).
FAST_MUX_PAYLOAD = 60 * 1024

# The fast path, on top of v2: Output payloads of up to FAST_PATH_PAYLOAD bytes, sent with a zero
# PayloadDigest and not checked. Per byte, SHA-256 and the copies around small messages were most of
# an endpoint's CPU; the digest guards nothing TCP (and TLS) do not already. Its negotiation is a
# state of the data-channel core (openssm.protocol.datachannel), where its keys are defined.
FAST_PATH_FRAME = 65536 - 8  # smux frame data: 15 whole frames with their headers fill a payload


def fast_mux_config() -> SmuxConfig:
    """v2 limits between OpenSSM ends. One stream needs a window of several MiB to stay busy across
    the gateway hop (measured: 2 MiB ~85 MiB/s, 8 MiB ~150 MiB/s); the session buffer holds eight
    full windows before every stream has to wait. Frames of FAST_PATH_FRAME bytes fill a
    fast-path payload exactly; only a write's short last frame shifts the later ones, so that a
    frame straddles two messages (about one message in three, in a bulk transfer)."""
    return SmuxConfig(
        version=FAST_MUX_VERSION,
        max_frame_size=FAST_PATH_FRAME,
        max_stream_buffer=8 * 1024 * 1024,
        max_receive_buffer=64 * 1024 * 1024,
        receive_hard_limit=96 * 1024 * 1024,
    )


def fast_mux_offered(properties: Mapping[str, Any]) -> bool:
    """The agent's Port handshake Properties offer smux v2 (it is OpenSSM's agent)."""
    return str(properties.get(FAST_MUX_PROPERTY, "")) == str(FAST_MUX_VERSION)


def fast_mux_payload(fast_path: bool) -> int:
    """Largest Output payload between OpenSSM ends on smux v2: with the fast path or without."""
    return FAST_PATH_PAYLOAD if fast_path else FAST_MUX_PAYLOAD


# One message's bytes, as queued: smux headers and views of the streams' data.
SendParts = Callable[[list[bytes | memoryview]], Awaitable[None]]


def joined(send_bytes: Callable[[bytes], Awaitable[None]]) -> SendParts:
    """A ``send`` for a transport that takes contiguous bytes."""

    async def send(parts: list[bytes | memoryview]) -> None:
        await send_bytes(b"".join(parts))

    return send


class MuxClosedError(OpenSSMError, ConnectionResetError):
    """The mux session ended (closed, protocol error, send failure) while the stream was in use."""


class MuxStreamResetError(OpenSSMError, ConnectionResetError):
    """The peer dropped the stream: nobody reads what would be written."""


class MuxStream(contextlib.AbstractAsyncContextManager["MuxStream"]):
    """One multiplexed byte stream. ``close`` half-closes (FIN); ``read`` returns b"" at EOF.

    ``abort`` drops the stream and resets the peer's side. Against xtaci/smux v2 peers (never
    AWS's programs, which use v1) a write after the peer closed may wait for a window forever:
    such peers close both ways at once and send no reset.
    """

    def __init__(self, session: MuxSession, stream_id: int) -> None:
        self._session = session
        self.stream_id = stream_id
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._reset = False

    def __repr__(self) -> str:
        return f"<MuxStream {self.stream_id}>"

    @property
    def _attached(self) -> bool:
        return self._session._streams.get(self.stream_id) is self

    def at_eof(self) -> bool:
        return not self._attached or self._session._core.at_eof(self.stream_id)

    async def read(self, n: int = DEFAULT_READ_SIZE) -> bytes:
        """Up to ``n`` bytes, waiting for at least one; b"" once the peer's FIN is reached."""
        return b"".join(await self.read_parts(n))

    async def read_parts(self, n: int = DEFAULT_READ_SIZE) -> list[bytes | memoryview]:
        """As :meth:`read`, in the pieces they arrived in (no join); [] once the peer's FIN is reached."""
        if n <= 0:
            return []
        session = self._session
        core = session._core
        while True:
            session._raise_if_failed()
            if not self._attached:
                return []
            parts = core.read_parts(self.stream_id, n)
            if parts:
                session._after_read(self)
                return parts
            session._raise_if_closed()
            if core.at_eof(self.stream_id):
                session._forget_if_gone(self)
                return []
            self._readable.clear()
            await self._readable.wait()

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send all of ``data``, waiting for the peer's window (v2) and the send queue."""
        session = self._session
        core = session._core
        view = memoryview(data).cast("B")
        while view:
            session._raise_if_failed()
            session._raise_if_closed()
            if self._reset:
                raise MuxStreamResetError(f"smux stream {self.stream_id} was reset by the peer")
            accepted = core.write(self.stream_id, view[: session._write_step])
            if accepted:
                view = view[accepted:]
                session._kick_sender()
                await session._wait_send_queue()
            else:
                self._writable.clear()
                await self._writable.wait()

    def _end(self, *, release: bool) -> bool:
        """Close this stream in the core (FIN), or with ``release`` drop it both ways, and have the
        sender go on; False when there is nothing left to end (the session closed, the stream gone)."""
        session = self._session
        if session.closed or not self._attached:
            return False
        core = session._core
        (core.release_stream if release else core.close_stream)(self.stream_id)
        session._kick_sender()
        session._forget_if_gone(self)
        return True

    async def close(self) -> None:
        """Send FIN: no more writes. Reading continues until the peer's FIN."""
        if self._end(release=False):
            await self._session._wait_send_queue()

    def abort(self) -> None:
        """Drop the stream both ways: unread data is discarded, a peer still sending is reset."""
        if self._end(release=True):
            self._session._capacity_changed()
            self._readable.set()
            self._writable.set()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.abort()


class MuxSession(contextlib.AbstractAsyncContextManager["MuxSession"]):
    """smux over a message transport. ``feed`` what arrives; ``send`` carries what leaves."""

    def __init__(
        self,
        send: SendParts,
        *,
        is_client: bool,
        version: int = 1,
        config: SmuxConfig | None = None,
        max_send_size: int = 65536,
    ) -> None:
        if config is None:
            config = SmuxConfig(version=version)
        elif config.version != version:
            raise ValueError(f"config is for smux v{config.version}, session asked for v{version}")
        if max_send_size <= 0:
            raise ValueError("max_send_size must be positive")
        self._send = send
        self._max_send_size = max_send_size
        self._core = SmuxSession(is_client=is_client, config=config)
        step = LARGE_WRITE_STEP if max_send_size >= LARGE_WRITE_STEP else WRITE_STEP
        self._write_step = max(1, step // config.max_frame_size) * config.max_frame_size
        self._streams: dict[int, MuxStream] = {}
        self._accept_ready = asyncio.Event()
        self._send_ready = asyncio.Event()
        self._send_queue_low = asyncio.Event()
        self._send_queue_low.set()
        self._capacity = asyncio.Event()
        self._capacity.set()
        self._sender: asyncio.Task[None] | None = None
        self._keepalive: asyncio.Task[None] | None = None
        self._error: BaseException | None = None

    @classmethod
    def fast(cls, send: SendParts, *, is_client: bool, fast_path: bool) -> MuxSession:
        """smux v2 between OpenSSM ends (:func:`fast_mux_config`), each message as large as the
        fast path, if agreed, allows (:func:`fast_mux_payload`)."""
        return cls(
            send,
            is_client=is_client,
            version=FAST_MUX_VERSION,
            config=fast_mux_config(),
            max_send_size=fast_mux_payload(fast_path),
        )

    # --- public API -------------------------------------------------------------------------------

    @property
    def version(self) -> int:
        return self._core.version

    @property
    def max_send_size(self) -> int:
        return self._max_send_size

    @property
    def closed(self) -> bool:
        return self._core.closed

    @property
    def error(self) -> BaseException | None:
        """Why the session ended abnormally, if it did."""
        return self._error

    @property
    def receive_buffered(self) -> int:
        return self._core.receive_buffered

    @property
    def max_receive_buffer(self) -> int:
        """Past this many buffered bytes the session reads no more (its config's limit)."""
        return self._core.config.max_receive_buffer

    @property
    def stream_count(self) -> int:
        return self._core.stream_count

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Take bytes from the peer. Raises SmuxProtocolError (and closes the session) on bad input."""
        if self._core.closed:
            return
        try:
            events = self._core.receive(data)
        except SmuxProtocolError as exc:
            self._shutdown(exc)
            raise
        ended = [stream for event in events if (stream := self._dispatch(event)) is not None]
        # Only after every event: a FIN and a reset in one feed both reach the stream.
        for stream in ended:
            self._forget_if_gone(stream)
        self._capacity_changed()
        self._kick_sender()

    async def wait_receive_capacity(self) -> None:
        """Return once the receive buffer has room (or the session is closed)."""
        while self._core.receive_capacity <= 0 and not self._core.closed:
            self._capacity.clear()
            await self._capacity.wait()

    async def open_stream(self) -> MuxStream:
        self._raise_if_failed()
        self._raise_if_closed()
        stream = MuxStream(self, self._core.open_stream())
        self._streams[stream.stream_id] = stream
        self._kick_sender()
        await self._wait_send_queue()
        return stream

    async def accept_stream(self) -> MuxStream:
        """The next stream the peer opens. Raises MuxClosedError once the session is closed."""
        while True:
            self._raise_if_failed()
            self._raise_if_closed()
            stream_id = self._core.accept()
            if stream_id is not None:
                return self._streams[stream_id]
            self._accept_ready.clear()
            await self._accept_ready.wait()

    def close(self) -> None:
        """End the session: FIN every stream still writable, then stop. Pending reads/writes fail."""
        if self._core.closed:
            return
        self._core.close(finish_streams=True)
        self._kick_sender()
        self._wake_all()

    async def wait_closed(self) -> None:
        """Wait until what was queued before ``close`` has been handed to ``send``."""
        if self._keepalive is not None:
            self._keepalive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keepalive
        if self._sender is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
        await self.wait_closed()

    # --- internals ----------------------------------------------------------------------------------

    def _dispatch(self, event: Event) -> MuxStream | None:
        """Wake whoever waits on the event; returns the stream if the peer ended or reset it."""
        if isinstance(event, StreamOpened):
            self._streams[event.stream_id] = MuxStream(self, event.stream_id)
            self._accept_ready.set()
            return None
        stream = self._streams.get(event.stream_id)
        if stream is None:
            return None
        if isinstance(event, DataReceived):
            stream._readable.set()
            return None
        if isinstance(event, WindowUpdated):
            stream._writable.set()
            return None
        # FIN or reset: waiting readers see EOF, waiting writers re-check
        stream._reset = stream._reset or isinstance(event, StreamReset)
        stream._readable.set()
        stream._writable.set()
        return stream

    def _after_read(self, stream: MuxStream) -> None:
        self._kick_sender()  # a v2 read may have queued an UPD
        self._capacity_changed()
        self._forget_if_gone(stream)

    def _forget_if_gone(self, stream: MuxStream) -> None:
        if not self._core.is_open(stream.stream_id) and self._streams.get(stream.stream_id) is stream:
            del self._streams[stream.stream_id]

    def _capacity_changed(self) -> None:
        if self._core.receive_capacity > 0:
            self._capacity.set()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise MuxClosedError(f"smux session failed: {self._error}") from self._error

    def _raise_if_closed(self) -> None:
        if self._core.closed:
            raise MuxClosedError("smux session closed")

    def _wake_all(self) -> None:
        for stream in self._streams.values():
            stream._readable.set()
            stream._writable.set()
        self._accept_ready.set()
        self._capacity.set()
        self._send_queue_low.set()
        self._send_ready.set()  # lets an idle sender task see the close and finish

    def _shutdown(self, error: BaseException) -> None:
        if self._error is None:
            self._error = error
        if not self._core.closed:
            self._core.close()
        self._wake_all()

    def _kick_sender(self) -> None:
        self._ensure_keepalive()
        if not self._core.pending_send:
            return
        if self._core.pending_send > SEND_QUEUE_HIGH_WATER:
            self._send_queue_low.clear()
        self._send_ready.set()
        if self._sender is None or self._sender.done():
            if self._error is not None:
                return
            self._sender = asyncio.get_running_loop().create_task(self._send_loop())

    async def _wait_send_queue(self) -> None:
        while self._core.pending_send > SEND_QUEUE_HIGH_WATER and self._error is None:
            self._send_queue_low.clear()
            await self._send_queue_low.wait()

    async def _send_loop(self) -> None:
        core = self._core
        bulk = False
        try:
            while True:
                while core.pending_send:
                    if bulk and core.pending_send < self._max_send_size and not core.closed:
                        for _ in range(COALESCE_TURNS):
                            await asyncio.sleep(0)
                    bulk = min(core.pending_send, self._max_send_size) >= BULK_MESSAGE  # what is taken
                    await self._send(core.parts_to_send(self._max_send_size))
                    if core.pending_send <= SEND_QUEUE_HIGH_WATER:
                        self._send_queue_low.set()
                if core.closed:
                    return
                self._send_ready.clear()
                await self._send_ready.wait()
        except Exception as exc:  # the transport is gone: every stream on it is
            self._shutdown(exc)

    def _ensure_keepalive(self) -> None:
        interval = self._core.config.keepalive_interval
        if interval is None or self._keepalive is not None or self._core.closed:
            return
        self._keepalive = asyncio.get_running_loop().create_task(self._keepalive_loop(interval))

    async def _keepalive_loop(self, interval: float) -> None:
        loop = asyncio.get_running_loop()
        timeout = self._core.config.keepalive_timeout
        next_check = loop.time() + timeout
        while not self._core.closed:
            await asyncio.sleep(interval)
            if self._core.closed:
                return
            self._core.send_keepalive()
            self._kick_sender()
            if loop.time() >= next_check:
                next_check = loop.time() + timeout
                if not self._core.keepalive_check():
                    self._shutdown(MuxClosedError(f"no smux frame from the peer for {timeout:g} s"))
                    return


async def pipe(stream: MuxStream, connection: TcpConnection, *, chunk_size: int = 32768) -> None:
    """Bridge ``stream`` and a local connection both ways until both directions have ended.

    Each direction ends on its own: local EOF sends FIN; the peer's FIN half-closes the socket
    (``write_eof``). A reset or session failure ends both. The stream and socket are released last.
    """

    async def local_to_stream() -> None:
        # Chunks as received, unjoined: smux frames are views of them all the way to the wire.
        while parts := await connection.read_parts(chunk_size):
            for part in parts:
                await stream.write(part)
        await stream.close()

    async def stream_to_local() -> None:
        while parts := await stream.read_parts(chunk_size):
            connection.writelines(parts)
            await connection.drain()
        if connection.can_write_eof():
            connection.write_eof()

    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(local_to_stream())
            group.create_task(stream_to_local())
    except* (OSError, SmuxError):
        pass  # the connection or the session broke: nothing to deliver any more
    finally:
        stream.abort()
        await close_quietly(connection)
