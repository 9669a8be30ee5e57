"""smux stream multiplexing, wire-compatible with xtaci/smux protocol versions 1 and 2 (sans-I/O).

AWS's plugin and agent carry port-forwarding TCP connections as smux v1 streams inside the data
channel's Output payloads (``session-manager-protocol.md`` §3.4). Those payloads form one continuous
byte stream per direction: frames may span messages and several frames may share one.

Frame: 8-byte header ``ver u8, cmd u8, length u16 LE, stream_id u32 LE`` followed by ``length`` bytes.
Commands: SYN (open), FIN (this side will send no more), PSH (data), NOP (keepalive) and, in v2
only, UPD (8-byte payload ``consumed u32 LE, window u32 LE``: per-stream flow control).

This module holds no I/O: :class:`SmuxSession` consumes received bytes, returns events, and queues
outgoing bytes for the caller to send (``data_to_send``). ``openssm.transport.mux`` is the asyncio adapter.

Behaviour follows xtaci/smux where peers can observe it:

* the client opens odd stream ids starting at 3, the server even ids starting at 2;
* the server sends nothing in reply to SYN; a FIN ends the sender's direction of the stream;
* v2 senders start with a 256 KiB guess of the peer window; receivers advertise their stream
  buffer in an UPD on the first read and whenever half of it has been consumed since the last one;
* keepalive NOPs are never sent unless configured (AWS's programs disable them).

One addition, invisible to xtaci/smux peers (they ignore a repeated FIN): FIN is a half-close
here, so a side that drops a stream it still receives on sends a *second* FIN, meaning "reset:
stop writing, nobody reads". Without it a v2 writer to a dropped stream would wait forever for a
window update, and a v1 writer would send into the void until its source ends.

Where xtaci/smux trusts its peer, we bound instead: a peer that overruns its v2 window or the
session receive buffer gets :class:`SmuxProtocolError`, never unbounded memory.
"""

from __future__ import annotations

import dataclasses
import enum
import struct
import sys
from collections import deque
from collections.abc import Iterable
from typing import Final

from openssm.errors import ProtocolError, RemoteProtocolError

HEADER: Final = struct.Struct("<BBHI")
HEADER_SIZE: Final = HEADER.size  # 8
UPDATE: Final = struct.Struct("<II")
UPDATE_SIZE: Final = UPDATE.size  # 8
MAX_PAYLOAD: Final = 0xFFFF  # the length field is 16 bits
MAX_STREAM_ID: Final = 0xFFFFFFFF
UINT32: Final = 1 << 32
INT32_MAX: Final = (1 << 31) - 1
SUPPORTED_VERSIONS: Final = frozenset({1, 2})

# A v2 sender's window before the peer's first UPD arrives (xtaci/smux ``initialPeerWindow``).
INITIAL_PEER_WINDOW: Final = 262144

DEFAULT_MAX_FRAME_SIZE: Final = 32768
DEFAULT_MAX_RECEIVE_BUFFER: Final = 4 * 1024 * 1024
DEFAULT_MAX_STREAM_BUFFER: Final = 64 * 1024


class Command(enum.IntEnum):
    SYN = 0
    FIN = 1
    PSH = 2
    NOP = 3
    UPD = 4


# Commands by value: cheaper per frame than Command(value), once check_header has vetted the value.
COMMANDS: Final = tuple(Command)


class SmuxError(ProtocolError, ValueError):
    """Base class of every smux error."""


class SmuxProtocolError(SmuxError, RemoteProtocolError):
    """The peer sent something that breaks the protocol or our limits; the session is unusable."""


class SmuxStreamError(SmuxError):
    """A local operation on a stream that cannot take it (unknown, closed for writing)."""


class SmuxStreamResetError(SmuxStreamError):
    """The peer dropped the stream (second FIN): writing is pointless."""


class SmuxSessionClosedError(SmuxError):
    """The session is closed (locally, or after a protocol error)."""


class SmuxGoAwayError(SmuxError):
    """Stream ids are exhausted on this session; open a new session."""


@dataclasses.dataclass(frozen=True, slots=True)
class SmuxFrame:
    """One smux frame. ``data`` is the raw payload (for UPD: the 8 encoded bytes)."""

    version: int
    command: Command
    stream_id: int
    data: bytes | memoryview = b""

    def encode(self) -> bytes:
        return encode_frame(self.version, self.command, self.stream_id, self.data)

    def update_fields(self) -> tuple[int, int]:
        """``(consumed, window)`` of an UPD frame."""
        if self.command is not Command.UPD or len(self.data) != UPDATE_SIZE:
            raise SmuxProtocolError(f"not an UPD frame: {self!r}")
        consumed, window = UPDATE.unpack(self.data)
        return consumed, window


def encode_header(version: int, command: int, length: int, stream_id: int) -> bytes:
    return HEADER.pack(version, command, length, stream_id)


def encode_frame(version: int, command: int, stream_id: int, data: bytes | memoryview = b"") -> bytes:
    if version not in SUPPORTED_VERSIONS:
        raise SmuxError(f"unsupported smux version {version}")
    if not 0 <= stream_id <= MAX_STREAM_ID:
        raise SmuxError(f"stream id out of range: {stream_id}")
    if len(data) > MAX_PAYLOAD:
        raise SmuxError(f"frame payload of {len(data)} bytes exceeds {MAX_PAYLOAD}")
    return HEADER.pack(version, command, len(data), stream_id) + data


def encode_update(consumed: int, window: int) -> bytes:
    return UPDATE.pack(consumed % UINT32, window % UINT32)


class FrameParser:
    """Incremental frame decoder: feed any split of the byte stream, get whole frames back.

    At most one partial frame (< 8 + 65535 bytes) is held between calls. After an error the parser
    stays failed: the byte stream has no resynchronisation point. With ``views`` each frame's
    data is a memoryview of the (immutable) bytes fed, not a copy: the relay path's choice.
    """

    def __init__(self, version: int | None = None, *, views: bool = False) -> None:
        if version is not None and version not in SUPPORTED_VERSIONS:
            raise SmuxError(f"unsupported smux version {version}")
        self._version = version
        self._views = views
        self._pending = bytearray()
        self._error: SmuxProtocolError | None = None

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame held back."""
        return len(self._pending)

    def feed(self, data: bytes | bytearray | memoryview) -> list[SmuxFrame]:
        if self._error is not None:
            raise self._error
        # Parse from immutable buffers: with ``views`` the frames' data are slices of them. As in
        # SmuxSession.write, a read-only view counts as immutable (its owner's promise).
        buffer: bytes | memoryview
        if isinstance(data, bytes) or (isinstance(data, memoryview) and data.readonly):
            buffer = data
        else:
            buffer = bytes(data)
        view = memoryview(buffer)
        frames: list[SmuxFrame] = []
        try:
            if self._pending:
                # Complete the held-back frame with just the bytes it lacks: joining all of ``data``
                # to it would copy every message that a frame straddles into.
                taken, complete = self._fill_pending(view)
                if not complete:
                    return frames
                view = view[taken:]
                whole = bytes(self._pending)
                self._pending.clear()
                self._parse(memoryview(whole), frames)
            consumed = self._parse(view, frames)
        except SmuxProtocolError as exc:
            self._error = exc
            raise
        if consumed < len(view):
            self._pending += view[consumed:]
        return frames

    def _fill_pending(self, view: memoryview) -> tuple[int, bool]:
        """Move the bytes the held-back frame lacks (its header first) from ``view`` into it:
        how many were taken, and whether the frame is now whole."""
        pending = self._pending
        taken = 0
        if len(pending) < HEADER_SIZE:
            taken = min(HEADER_SIZE - len(pending), len(view))
            pending += view[:taken]
            if len(pending) < HEADER_SIZE:
                return taken, False
        version, command, length, _ = HEADER.unpack_from(pending)
        check_header(self._version, version, command, length)
        more = min(HEADER_SIZE + length - len(pending), len(view) - taken)
        pending += view[taken : taken + more]
        return taken + more, len(pending) == HEADER_SIZE + length

    def _parse(self, view: memoryview, frames: list[SmuxFrame]) -> int:
        position = 0
        end = len(view)
        while end - position >= HEADER_SIZE:
            version, command, length, stream_id = HEADER.unpack_from(view, position)
            check_header(self._version, version, command, length)
            start = position + HEADER_SIZE
            if end - start < length:
                break
            data = view[start : start + length]
            frames.append(
                SmuxFrame(version, COMMANDS[command], stream_id, data if self._views else bytes(data))
            )
            position = start + length
        return position


def check_header(expected_version: int | None, version: int, command: int, length: int) -> None:
    """The checks every reader of an smux stream makes on a frame header, before its payload."""
    if expected_version is not None and version != expected_version:
        raise SmuxProtocolError(f"smux version {version} on a version {expected_version} session")
    if version not in SUPPORTED_VERSIONS:
        raise SmuxProtocolError(f"unsupported smux version {version}")
    if command > Command.UPD:
        raise SmuxProtocolError(f"unknown smux command {command}")
    if command == Command.UPD and length != UPDATE_SIZE:
        raise SmuxProtocolError(f"UPD frame with {length}-byte payload (expected {UPDATE_SIZE})")


def decode_frames(data: bytes, version: int | None = None) -> list[SmuxFrame]:
    """Decode a buffer holding only whole frames (for replays and tests)."""
    parser = FrameParser(version)
    frames = parser.feed(data)
    if parser.pending:
        raise SmuxProtocolError(f"{parser.pending} trailing bytes do not form a whole frame")
    return frames


@dataclasses.dataclass(frozen=True, slots=True)
class SmuxConfig:
    """Session limits. Defaults are xtaci/smux ``DefaultConfig`` with keepalive disabled."""

    version: int = 1
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
    max_receive_buffer: int = DEFAULT_MAX_RECEIVE_BUFFER
    max_stream_buffer: int = DEFAULT_MAX_STREAM_BUFFER
    # None: never send NOP and never time out (what AWS's programs negotiate).
    keepalive_interval: float | None = None
    keepalive_timeout: float = 30.0
    # Streams open at once (both directions) and peer-opened streams not yet accepted; a peer SYN
    # beyond either is refused with an immediate reset rather than buffered.
    max_streams: int = 4096
    accept_backlog: int = 1024
    # Buffered received bytes beyond which the peer is cut off. Callers stop feeding at
    # max_receive_buffer (``receive_capacity``), so only a caller or peer ignoring that reaches it.
    receive_hard_limit: int = 2 * DEFAULT_MAX_RECEIVE_BUFFER

    def __post_init__(self) -> None:
        if self.version not in SUPPORTED_VERSIONS:
            raise SmuxError(f"unsupported smux version {self.version}")
        if not 0 < self.max_frame_size <= MAX_PAYLOAD:
            raise SmuxError(f"max_frame_size must be in 1..{MAX_PAYLOAD}")
        if not 0 < self.max_receive_buffer <= INT32_MAX:
            raise SmuxError("max_receive_buffer must be positive and fit in int32")
        if not 0 < self.max_stream_buffer <= self.max_receive_buffer:
            raise SmuxError("max_stream_buffer must be positive and not larger than max_receive_buffer")
        if self.receive_hard_limit < self.max_receive_buffer:
            raise SmuxError("receive_hard_limit must not be smaller than max_receive_buffer")
        if self.keepalive_interval is not None and not 0 < self.keepalive_interval <= self.keepalive_timeout:
            raise SmuxError("keepalive_interval must be positive and not larger than keepalive_timeout")
        if self.max_streams <= 0 or self.accept_backlog <= 0:
            raise SmuxError("max_streams and accept_backlog must be positive")


# Events returned by SmuxSession.receive ------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class StreamEvent:
    """Something happened to stream ``stream_id``; each kind below is one of these."""

    stream_id: int


class StreamOpened(StreamEvent):
    """The peer opened a stream; it waits in the accept queue."""

    __slots__ = ()


@dataclasses.dataclass(frozen=True, slots=True)
class DataReceived(StreamEvent):
    """``length`` bytes arrived for a stream, in one run of consecutive data frames."""

    length: int


class StreamEnded(StreamEvent):
    """The peer sent FIN: it will send no more data on this stream."""

    __slots__ = ()


class StreamReset(StreamEvent):
    """The peer dropped the stream: writes fail; what was received stays readable."""

    __slots__ = ()


class WindowUpdated(StreamEvent):
    """v2: the peer consumed data; more may be written."""

    __slots__ = ()


Event = StreamOpened | DataReceived | StreamEnded | StreamReset | WindowUpdated


@dataclasses.dataclass(slots=True)
class _Stream:
    stream_id: int
    chunks: deque[bytes | memoryview] = dataclasses.field(default_factory=deque)
    head_offset: int = 0
    buffered: int = 0
    local_fin: bool = False
    remote_fin: bool = False
    reset: bool = False
    # v2 counters, all modulo 2**32 like the wire fields.
    num_read: int = 0
    read_since_update: int = 0
    num_written: int = 0
    peer_consumed: int = 0
    peer_window: int = INITIAL_PEER_WINDOW


class SmuxSession:
    """One smux session's state: streams, buffers, windows, and the queue of bytes to send."""

    def __init__(self, *, is_client: bool, config: SmuxConfig | None = None) -> None:
        self.config = config or SmuxConfig()
        self.is_client = is_client
        self._parser = FrameParser(self.config.version, views=True)
        # The most a stream may hold unread: v2's window (the peer's first window is fixed), v1's none.
        self._stream_buffer_limit = (
            max(INITIAL_PEER_WINDOW, self.config.max_stream_buffer)
            if self.config.version == 2
            else sys.maxsize
        )
        self._streams: dict[int, _Stream] = {}
        self._accept_queue: deque[int] = deque()
        self._next_stream_id = 1 if is_client else 0
        self._outbox: deque[bytes | memoryview] = deque()
        self._outbox_size = 0
        self._receive_buffered = 0
        self._frames_since_keepalive_check = False
        self._closed = False
        self.error: SmuxError | None = None

    # --- session ------------------------------------------------------------------------------

    @property
    def version(self) -> int:
        return self.config.version

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def receive_buffered(self) -> int:
        """Received bytes held in stream buffers, not yet read."""
        return self._receive_buffered

    @property
    def receive_capacity(self) -> int:
        """How much more the session buffer takes; feed nothing more while this is <= 0."""
        return self.config.max_receive_buffer - self._receive_buffered

    @property
    def stream_count(self) -> int:
        return len(self._streams)

    def close(self, *, finish_streams: bool = False) -> None:
        """Close the session: no more frames are taken or produced. Queued bytes stay sendable.

        With ``finish_streams`` a FIN is queued first for every stream still open for writing, so
        the peer sees its streams end even if the transport outlives this session.
        """
        if finish_streams and not self._closed:
            for stream in list(self._streams.values()):
                if not stream.local_fin:
                    stream.local_fin = True
                    self._queue(Command.FIN, stream.stream_id)
        self._closed = True
        self._streams.clear()
        self._accept_queue.clear()
        self._receive_buffered = 0

    def _fail(self, error: SmuxError) -> SmuxError:
        if self.error is None:
            self.error = error
        self.close()
        return error

    def _check_open(self) -> None:
        if self._closed:
            raise SmuxSessionClosedError(f"smux session closed: {self.error}" if self.error else "closed")

    # --- outgoing bytes ------------------------------------------------------------------------

    @property
    def pending_send(self) -> int:
        return self._outbox_size

    def data_to_send(self, max_bytes: int | None = None) -> bytes:
        """Take queued outgoing bytes (at most ``max_bytes``; frames may be split across calls)."""
        return b"".join(self.parts_to_send(max_bytes))

    def parts_to_send(self, max_bytes: int | None = None) -> list[bytes | memoryview]:
        """As :meth:`data_to_send`, but the pieces as queued (headers and data), not joined."""
        if max_bytes is None or max_bytes >= self._outbox_size:
            parts = list(self._outbox)  # all of it: no per-piece bookkeeping
            self._outbox.clear()
            self._outbox_size = 0
            return parts
        limit = max_bytes
        parts = []
        taken = 0
        while taken < limit:
            head = self._outbox[0]
            room = limit - taken
            if len(head) <= room:
                parts.append(self._outbox.popleft())
                taken += len(head)
            else:
                parts.append(head[:room])
                self._outbox[0] = head[room:]
                taken = limit
        self._outbox_size -= taken
        return parts

    def _queue(self, command: Command, stream_id: int, data: bytes | memoryview = b"") -> None:
        self._outbox.append(HEADER.pack(self.config.version, command, len(data), stream_id))
        self._outbox_size += HEADER_SIZE
        if data:
            self._outbox.append(data)
            self._outbox_size += len(data)

    # --- keepalive -----------------------------------------------------------------------------

    def send_keepalive(self) -> None:
        """Queue a NOP. Only call when keepalive is configured."""
        self._check_open()
        self._queue(Command.NOP, 0)

    def keepalive_check(self) -> bool:
        """True if any frame arrived since the previous check (call every keepalive_timeout).

        A session whose receive buffer is full is not expected to take frames (xtaci/smux stops
        reading then), so it counts as alive.
        """
        alive = self._frames_since_keepalive_check or self.receive_capacity <= 0
        self._frames_since_keepalive_check = False
        return alive

    # --- streams: opening and accepting ----------------------------------------------------------

    def _owns(self, stream_id: int) -> bool:
        """Whether ``stream_id`` has the parity this side opens."""
        return (stream_id % 2 == 1) == self.is_client

    def open_stream(self) -> int:
        """Open a stream: allocate its id and queue the SYN."""
        self._check_open()
        if len(self._streams) >= self.config.max_streams:
            raise SmuxStreamError(f"too many open streams ({self.config.max_streams})")
        stream_id = self._next_stream_id + 2
        if stream_id > MAX_STREAM_ID:
            raise SmuxGoAwayError("smux stream ids exhausted")
        self._next_stream_id = stream_id
        self._streams[stream_id] = _Stream(stream_id)
        self._queue(Command.SYN, stream_id)
        return stream_id

    def accept(self) -> int | None:
        """The next stream the peer opened, or None."""
        while self._accept_queue:
            stream_id = self._accept_queue.popleft()
            if stream_id in self._streams:
                return stream_id
        return None

    def is_open(self, stream_id: int) -> bool:
        return stream_id in self._streams

    # --- streams: reading --------------------------------------------------------------------------

    def buffered(self, stream_id: int) -> int:
        stream = self._streams.get(stream_id)
        return stream.buffered if stream else 0

    def at_eof(self, stream_id: int) -> bool:
        """No more data will ever be readable (peer FIN and buffer drained, or stream gone)."""
        stream = self._streams.get(stream_id)
        return stream is None or (stream.remote_fin and stream.buffered == 0)

    def read(self, stream_id: int, max_bytes: int) -> bytes:
        """Take up to ``max_bytes`` buffered bytes (b"" if none); in v2 may queue an UPD."""
        return b"".join(self.read_parts(stream_id, max_bytes))

    def read_parts(self, stream_id: int, max_bytes: int) -> list[bytes | memoryview]:
        """As :meth:`read`, but the buffered pieces themselves (empty if none), for a writer that
        takes several buffers at once."""
        if max_bytes <= 0:
            raise SmuxStreamError("read size must be positive")
        stream = self._streams.get(stream_id)
        if stream is None or not stream.buffered:
            return []
        parts = self._take(stream, max_bytes)
        taken = sum(map(len, parts))
        self._receive_buffered -= taken
        if self.config.version == 2:
            self._note_consumed(stream, taken)
        self._forget_if_done(stream)
        return parts

    @staticmethod
    def _take(stream: _Stream, max_bytes: int) -> list[bytes | memoryview]:
        parts: list[bytes | memoryview] = []
        need = max_bytes
        while need and stream.chunks:
            head = stream.chunks[0]
            available = len(head) - stream.head_offset
            if available <= need:
                parts.append(head[stream.head_offset :] if stream.head_offset else head)
                stream.chunks.popleft()
                stream.head_offset = 0
                need -= available
            else:
                parts.append(head[stream.head_offset : stream.head_offset + need])
                stream.head_offset += need
                need = 0
        stream.buffered -= max_bytes - need
        return parts

    def _note_consumed(self, stream: _Stream, count: int) -> None:
        first_read = stream.num_read == 0
        stream.num_read = (stream.num_read + count) % UINT32
        stream.read_since_update += count
        # Report on the first read and after each half buffer, so a reading consumer keeps data
        # flowing without waiting a round trip per window. A peer that finished sending needs none.
        due = first_read or stream.read_since_update >= self.config.max_stream_buffer // 2
        if due and not stream.remote_fin and not self._closed:
            stream.read_since_update = 0
            self._queue(
                Command.UPD, stream.stream_id, encode_update(stream.num_read, self.config.max_stream_buffer)
            )

    # --- streams: writing ------------------------------------------------------------------------

    def send_window(self, stream_id: int) -> int:
        """Bytes ``write`` accepts now (v1: unlimited, reported as the receive-buffer size)."""
        stream = self._writable(stream_id)
        if self.config.version == 1:
            return self.config.max_receive_buffer
        return self._window(stream)

    @staticmethod
    def _window(stream: _Stream) -> int:
        in_flight = (stream.num_written - stream.peer_consumed) % UINT32
        return max(0, min(stream.peer_window, INT32_MAX) - in_flight)

    def _writable(self, stream_id: int) -> _Stream:
        self._check_open()
        stream = self._streams.get(stream_id)
        if stream is None:
            raise SmuxStreamError(f"stream {stream_id} is closed")
        if stream.reset:
            raise SmuxStreamResetError(f"stream {stream_id} was reset by the peer")
        if stream.local_fin:
            raise SmuxStreamError(f"stream {stream_id} is closed for writing")
        return stream

    def write(self, stream_id: int, data: bytes | bytearray | memoryview) -> int:
        """Queue PSH frames for as much of ``data`` as the window allows; return that count.

        ``bytes`` and read-only memoryviews are queued uncopied: the caller must not change a
        read-only view's buffer afterwards. Anything writable is copied."""
        stream = self._writable(stream_id)
        allowed = len(data)
        if self.config.version == 2:
            allowed = min(allowed, self._window(stream))
        frame_size = self.config.max_frame_size
        view = memoryview(data)
        # bytes and read-only views are queued as they are: a read-only view's owner promises not to
        # change it (views of bytes cannot change; openssm.transport.tcp_connection's are never rewritten). A
        # writable buffer is copied.
        keep = isinstance(data, bytes) or (isinstance(data, memoryview) and data.readonly)
        for start in range(0, allowed, frame_size):
            piece = view[start : min(start + frame_size, allowed)]
            self._queue(Command.PSH, stream_id, piece if keep else bytes(piece))
        stream.num_written = (stream.num_written + allowed) % UINT32
        return allowed

    def close_stream(self, stream_id: int) -> None:
        """Send FIN: this side writes no more. Reading goes on until the peer's FIN."""
        self._check_open()
        stream = self._streams.get(stream_id)
        if stream is None or stream.local_fin:
            return
        stream.local_fin = True
        self._queue(Command.FIN, stream_id)
        self._forget_if_done(stream)

    def release_stream(self, stream_id: int) -> None:
        """Drop a stream entirely: buffered data is discarded; a peer still sending is reset."""
        if self._closed:
            return
        stream = self._streams.pop(stream_id, None)
        if stream is None:
            return
        self._receive_buffered -= stream.buffered
        if not stream.local_fin:
            self._queue(Command.FIN, stream_id)
        if not stream.remote_fin:
            self._queue(Command.FIN, stream_id)

    def _forget_if_done(self, stream: _Stream) -> None:
        if stream.local_fin and stream.remote_fin and not stream.buffered:
            self._streams.pop(stream.stream_id, None)

    # --- receiving ---------------------------------------------------------------------------------

    def receive(self, data: bytes | bytearray | memoryview) -> list[Event]:
        """Consume bytes from the peer. Raises SmuxProtocolError (and closes) on bad input."""
        if self._closed:
            if self.error is not None:
                raise self.error
            return []
        try:
            frames = self._parser.feed(data)
        except SmuxProtocolError as exc:
            raise self._fail(exc) from None
        if frames:
            self._frames_since_keepalive_check = True
        events: list[Event] = []
        # Consecutive data frames of one stream make one DataReceived: a bulk transfer's dozen
        # frames per message then cost the caller one wake-up, not a dozen.
        data_stream, data_length = -1, 0
        for frame in frames:
            if frame.command is Command.PSH:
                length = self._on_data(frame.stream_id, frame.data)
                if length:
                    if frame.stream_id != data_stream:
                        if data_length:
                            events.append(DataReceived(data_stream, data_length))
                        data_stream, data_length = frame.stream_id, 0
                    data_length += length
                continue
            if data_length:
                events.append(DataReceived(data_stream, data_length))
                data_stream, data_length = -1, 0
            event = self._handle(frame)
            if event is not None:
                events.append(event)
        if data_length:
            events.append(DataReceived(data_stream, data_length))
        return events

    def receive_frames(self, frames: Iterable[SmuxFrame]) -> list[Event]:
        """Consume already-decoded frames (tests, replays)."""
        return self.receive(b"".join(frame.encode() for frame in frames))

    def _handle(self, frame: SmuxFrame) -> Event | None:
        """A frame other than PSH (data frames are handled in :meth:`receive`)."""
        command = frame.command
        if command is Command.SYN:
            return self._on_open(frame.stream_id)
        if command is Command.FIN:
            return self._on_fin(frame.stream_id)
        if command is Command.UPD:
            return self._on_update(frame)
        return None  # NOP: liveness only

    def _on_open(self, stream_id: int) -> Event | None:
        if stream_id in self._streams:
            return None  # duplicate SYN: ignored, as xtaci/smux does
        if stream_id == 0 or self._owns(stream_id):
            side = "client" if self.is_client else "server"
            raise self._fail(SmuxProtocolError(f"peer opened stream {stream_id}, an id the {side} owns"))
        if (
            len(self._streams) >= self.config.max_streams
            or len(self._accept_queue) >= self.config.accept_backlog
        ):
            # Refuse without keeping state: FIN (EOF) and FIN again (reset).
            self._queue(Command.FIN, stream_id)
            self._queue(Command.FIN, stream_id)
            return None
        self._streams[stream_id] = _Stream(stream_id)
        self._accept_queue.append(stream_id)
        return StreamOpened(stream_id)

    def _on_data(self, stream_id: int, data: bytes | memoryview) -> int:
        """Buffer a data frame; returns how many bytes it added (0: discarded)."""
        stream = self._streams.get(stream_id)
        # Data for a stream we dropped (or never had) is discarded, as xtaci/smux does.
        if stream is None or not data or stream.remote_fin:
            return 0
        length = len(data)
        stream.chunks.append(data)
        stream.buffered += length
        self._receive_buffered += length
        if stream.buffered > self._stream_buffer_limit:
            raise self._fail(SmuxProtocolError(f"peer overran the flow-control window of stream {stream_id}"))
        if self._receive_buffered > self.config.receive_hard_limit:
            raise self._fail(
                SmuxProtocolError(
                    f"smux receive buffer limit exceeded ({self._receive_buffered} > "
                    f"{self.config.receive_hard_limit} bytes)"
                )
            )
        return length

    def _on_fin(self, stream_id: int) -> Event | None:
        stream = self._streams.get(stream_id)
        if stream is None or stream.reset:
            return None
        if stream.remote_fin:
            stream.reset = True
            stream.local_fin = True  # nothing more may be written; the peer needs no FIN
            self._forget_if_done(stream)
            return StreamReset(stream_id)
        stream.remote_fin = True
        self._forget_if_done(stream)
        return StreamEnded(stream_id)

    def _on_update(self, frame: SmuxFrame) -> Event | None:
        if self.config.version == 1:
            return None  # v1 has no windows; xtaci/smux v1 also ignores UPD's effect
        stream = self._streams.get(frame.stream_id)
        if stream is None:
            return None
        consumed, window = frame.update_fields()
        if (stream.num_written - consumed) % UINT32 > INT32_MAX:
            raise self._fail(
                SmuxProtocolError(f"peer acknowledged more than was sent on stream {frame.stream_id}")
            )
        stream.peer_consumed = consumed
        stream.peer_window = window
        return WindowUpdated(frame.stream_id)
