"""WebSocket framing (RFC 6455) for the data channels, without I/O and without copies of payloads.

Data channels carry up to about 1 MiB per message at hundreds of MiB/s. aiohttp's framing copies
each such message four or five times on the way through (slices, joins, bytearray, ``bytes()``);
this codec is built so that the I/O layer never needs to:

* :class:`FrameReader` tells the reader where to put the next bytes (:meth:`FrameReader.buffer`):
  a small scratch area for headers and small frames, and, once a large frame's header has been
  read, the frame's own payload buffer, so the socket reads straight into the message it becomes.
  Masked payloads are unmasked in place.
* :func:`encode` builds a frame from pieces: unmasked, the pieces are passed on untouched after a
  header; masked, header and payload are joined once and masked in one pass.

The XOR itself is injected (``mask``: a function masking a whole bytearray in place), so that this
module stays free of I/O libraries while the I/O layer supplies a compiled one.

Only what the data channels need is supported: no extensions (no compression), no subprotocols.
Limits are explicit: a message larger than ``max_message`` is a protocol error (close code 1009).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Sequence
from typing import Final

from openssm.errors import RemoteProtocolError
from openssm.protocol.buffers import receive_buffer
from openssm.protocol.values import Value

Buffer = bytes | bytearray | memoryview

OP_CONTINUATION: Final = 0x0
OP_TEXT: Final = 0x1
OP_BINARY: Final = 0x2
OP_CLOSE: Final = 0x8
OP_PING: Final = 0x9
OP_PONG: Final = 0xA
DATA_OPCODES: Final = frozenset({OP_TEXT, OP_BINARY})
CONTROL_OPCODES: Final = frozenset({OP_CLOSE, OP_PING, OP_PONG})

CLOSE_NORMAL: Final = 1000
CLOSE_PROTOCOL_ERROR: Final = 1002
CLOSE_INVALID_DATA: Final = 1007
CLOSE_MESSAGE_TOO_BIG: Final = 1009
# Codes a peer may send (RFC 6455 §7.4.1 and the registry); 1005, 1006 and 1015 never go on the wire.
_SENDABLE_CLOSE_CODES: Final = frozenset(
    {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014}
)

MAX_CONTROL_PAYLOAD: Final = 125
# Header and small frames are read into this scratch area; larger payloads get their own buffer.
# 64 KiB suits a data channel's bulk reads; a connection that carries a few small frames a minute
# (the agent's control channel) takes a smaller one (``scratch_size``).
SCRATCH_SIZE: Final = 64 * 1024
MIN_SCRATCH_SIZE: Final = 256  # room for any frame header (at most 14 bytes) and a control frame
CONTROL_READ_BUFFER: Final = 4 * 1024  # the scratch_size of the agent's control channel

MaskFunction = Callable[[bytes, bytearray], None]  # XORs the bytearray in place, key repeating


class WebSocketProtocolError(RemoteProtocolError):
    """The peer broke RFC 6455 (or our limits); ``code`` is the close code to answer with."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class Message(Value):
    """A whole data message (text or binary, reassembled) or one control frame."""

    __slots__ = ("data", "opcode")
    opcode: int
    data: bytes | bytearray

    def __init__(self, opcode: int, data: bytes | bytearray) -> None:
        object.__setattr__(self, "opcode", opcode)
        object.__setattr__(self, "data", data)


def mask_python(key: bytes, data: bytearray) -> None:
    """The reference :data:`MaskFunction`, for tests and platforms without a compiled one."""
    if not data:
        return
    repeated = (key * (len(data) // 4 + 1))[: len(data)]
    data[:] = (int.from_bytes(data, "big") ^ int.from_bytes(repeated, "big")).to_bytes(len(data), "big")


def new_mask_key() -> bytes:
    """A fresh masking key from a strong source, as RFC 6455 §5.3 requires of clients."""
    return os.urandom(4)


def header(opcode: int, length: int, *, fin: bool = True, mask_key: bytes | None = None) -> bytes:
    """A frame header (with the masking key, when there is one)."""
    first = (0x80 if fin else 0) | opcode
    mask_bit = 0x80 if mask_key is not None else 0
    if length < 126:
        head = struct.pack("!BB", first, mask_bit | length)
    elif length < 1 << 16:
        head = struct.pack("!BBH", first, mask_bit | 126, length)
    else:
        head = struct.pack("!BBQ", first, mask_bit | 127, length)
    return head if mask_key is None else head + mask_key


def encode(
    opcode: int,
    payload: Sequence[Buffer],
    *,
    mask_key: bytes | None = None,
    mask: MaskFunction = mask_python,
) -> list[Buffer]:
    """One whole frame from payload pieces, as pieces to write in order.

    Unmasked (a server's frames), the pieces go out as they are after the header. Masked (a
    client's), header, key and payload are joined into one buffer and the whole buffer is masked
    in one pass: the header bytes are pre-XORed with the same (rotated) key so that the pass
    restores them. One copy and one XOR pass, however many pieces.
    """
    length = sum(map(len, payload))
    if opcode in CONTROL_OPCODES and length > MAX_CONTROL_PAYLOAD:
        raise ValueError(f"a control frame carries at most {MAX_CONTROL_PAYLOAD} bytes")
    if mask_key is None:
        return [header(opcode, length), *payload]
    if len(mask_key) != 4:
        raise ValueError("a masking key is 4 bytes")
    head = header(opcode, length, mask_key=mask_key)
    shift = len(head) % 4
    # The payload starts at len(head): byte i of the buffer must be XORed with key[(i - len(head)) % 4].
    whole_key = mask_key[-shift:] + mask_key[:-shift] if shift else mask_key
    premasked_head = bytearray(head)
    mask_python(whole_key, premasked_head)
    frame = bytearray().join([premasked_head, *payload])
    mask(whole_key, frame)
    return [frame]


class FrameReader:
    """Parses the frames of one direction of a connection, reading into buffers it hands out.

    ``masked``: whether the peer must mask (a server reads masked frames, a client unmasked ones);
    a frame the other way round is a protocol error. Use: ``view = reader.buffer()``, read up to
    ``len(view)`` bytes into it, then ``reader.filled(n)`` returns the messages completed.
    """

    def __init__(
        self,
        *,
        masked: bool,
        max_message: int,
        mask: MaskFunction = mask_python,
        scratch_size: int = SCRATCH_SIZE,
    ) -> None:
        if max_message <= 0:
            raise ValueError("max_message must be positive")
        if scratch_size < MIN_SCRATCH_SIZE:
            raise ValueError(f"scratch_size must be at least {MIN_SCRATCH_SIZE}")
        self._masked = masked
        self._max_message = max_message
        self._mask = mask
        self._scratch = bytearray(scratch_size)
        self._start = 0  # unparsed bytes are _scratch[_start:_end]
        self._end = 0
        # A large frame's payload being read directly into its own buffer.
        self._direct: bytearray | None = None
        self._direct_filled = 0
        self._direct_frame: tuple[bool, int, bytes | None] | None = None  # fin, opcode, mask key
        # A fragmented data message being reassembled.
        self._fragments: list[bytes | bytearray] = []
        self._fragments_size = 0
        self._fragments_opcode: int | None = None
        self.closed = False  # a close frame was read: nothing may follow

    def buffer(self) -> memoryview:
        """Where the next bytes read from the socket go (never empty)."""
        if self._direct is not None:
            return memoryview(self._direct)[self._direct_filled :]
        if self._end == len(self._scratch):
            self._compact()
        return memoryview(self._scratch)[self._end :]

    def filled(self, count: int) -> list[Message]:
        """``count`` bytes were written at the start of the last :meth:`buffer`; parse them."""
        if count <= 0:
            return []
        if self.closed:
            raise WebSocketProtocolError(CLOSE_PROTOCOL_ERROR, "data after a close frame")
        messages: list[Message] = []
        if self._direct is not None:
            self._direct_filled += count
            if self._direct_filled < len(self._direct):
                return messages
            payload, self._direct = self._direct, None
            assert self._direct_frame is not None
            fin, opcode, key = self._direct_frame
            self._direct_frame = None
            self._frame_done(fin, opcode, key, payload, messages)
            return messages
        self._end += count
        self._parse(messages)
        return messages

    # -- parsing ---------------------------------------------------------------------------------

    def _compact(self) -> None:
        unparsed = self._end - self._start
        self._scratch[:unparsed] = self._scratch[self._start : self._end]
        self._start, self._end = 0, unparsed

    def _parse(self, messages: list[Message]) -> None:
        while not self.closed:
            parsed = self._header()
            if parsed is None:
                break
            fin, opcode, key, length, header_size = parsed
            available = self._end - self._start - header_size
            if available >= length:
                begin = self._start + header_size
                payload = self._scratch[begin : begin + length]
                self._start = begin + length
                self._frame_done(fin, opcode, key, payload, messages)
                continue
            if length + header_size <= len(self._scratch):
                break  # a small frame: wait for the rest in the scratch area
            # A large frame: the part read so far moves to its own buffer, the rest is read there.
            begin = self._start + header_size
            self._direct = receive_buffer(length)  # every byte is read into it before use
            self._direct[:available] = memoryview(self._scratch)[begin : self._end]
            self._direct_filled = available
            self._direct_frame = (fin, opcode, key)
            self._start = self._end = 0
            break
        if self._start == self._end:
            self._start = self._end = 0

    def _header(self) -> tuple[bool, int, bytes | None, int, int] | None:
        """(fin, opcode, mask key, payload length, header size) of the next frame, once complete."""
        data = self._scratch
        at = self._start
        have = self._end - at
        if have < 2:
            return None
        first, second = data[at], data[at + 1]
        fin = bool(first & 0x80)
        if first & 0x70:
            raise WebSocketProtocolError(CLOSE_PROTOCOL_ERROR, "reserved bits set (no extension was agreed)")
        opcode = first & 0x0F
        if opcode not in DATA_OPCODES and opcode not in CONTROL_OPCODES and opcode != OP_CONTINUATION:
            raise WebSocketProtocolError(CLOSE_PROTOCOL_ERROR, f"unknown opcode {opcode}")
        has_mask = bool(second & 0x80)
        if has_mask != self._masked:
            raise WebSocketProtocolError(
                CLOSE_PROTOCOL_ERROR,
                "client frames must be masked" if self._masked else "server frames must not be masked",
            )
        length = second & 0x7F
        size = 2
        if length == 126:
            size = 4
            if have < size:
                return None
            (length,) = struct.unpack_from("!H", data, at + 2)
        elif length == 127:
            size = 10
            if have < size:
                return None
            (length,) = struct.unpack_from("!Q", data, at + 2)
            if length >> 63:
                raise WebSocketProtocolError(CLOSE_PROTOCOL_ERROR, "payload length has its top bit set")
        if opcode in CONTROL_OPCODES:
            if not fin:
                raise WebSocketProtocolError(CLOSE_PROTOCOL_ERROR, "a control frame cannot be fragmented")
            if length > MAX_CONTROL_PAYLOAD:
                raise WebSocketProtocolError(CLOSE_PROTOCOL_ERROR, "control frame payload over 125 bytes")
        elif length + self._fragments_size > self._max_message:
            raise WebSocketProtocolError(
                CLOSE_MESSAGE_TOO_BIG, f"message over the {self._max_message}-byte limit"
            )
        key = None
        if has_mask:
            if have < size + 4:
                return None
            key = bytes(data[at + size : at + size + 4])
            size += 4
        return fin, opcode, key, length, size

    def _frame_done(
        self, fin: bool, opcode: int, key: bytes | None, payload: bytearray, messages: list[Message]
    ) -> None:
        if key is not None:
            self._mask(key, payload)
        if opcode in CONTROL_OPCODES:
            if opcode == OP_CLOSE:
                check_close_payload(payload)
                self.closed = True
            messages.append(Message(opcode, payload))
            return
        if opcode == OP_CONTINUATION:
            if self._fragments_opcode is None:
                raise WebSocketProtocolError(CLOSE_PROTOCOL_ERROR, "continuation frame without a message")
        elif self._fragments_opcode is not None:
            raise WebSocketProtocolError(CLOSE_PROTOCOL_ERROR, "new message before the last one ended")
        else:
            if fin:
                messages.append(Message(opcode, payload))
                return
            self._fragments_opcode = opcode
        self._fragments.append(payload)
        self._fragments_size += len(payload)
        if fin:
            whole = b"".join(self._fragments)
            messages.append(Message(self._fragments_opcode, whole))
            self._fragments.clear()
            self._fragments_size = 0
            self._fragments_opcode = None


def close_payload(code: int, reason: str = "") -> bytes:
    """A close frame's payload: the code, then at most 123 bytes of UTF-8 reason (cut between
    characters: a peer must refuse a reason that is not valid UTF-8)."""
    encoded = reason.encode()[:123].decode(errors="ignore").encode()
    return struct.pack("!H", code) + encoded


def check_close_payload(payload: Buffer) -> None:
    """RFC 6455 §5.5.1 and §7.4: empty, or a valid code followed by UTF-8."""
    if len(payload) == 0:
        return
    if len(payload) == 1:
        raise WebSocketProtocolError(CLOSE_PROTOCOL_ERROR, "close frame with a one-byte payload")
    (code,) = struct.unpack_from("!H", payload)
    if code not in _SENDABLE_CLOSE_CODES and not 3000 <= code <= 4999:
        raise WebSocketProtocolError(CLOSE_PROTOCOL_ERROR, f"invalid close code {code}")
    try:
        bytes(payload[2:]).decode()
    except UnicodeDecodeError:
        raise WebSocketProtocolError(CLOSE_INVALID_DATA, "close reason is not UTF-8") from None


def close_code(payload: Buffer) -> int | None:
    """The code in a (checked) close frame's payload; None when it has none."""
    if len(payload) < 2:
        return None
    return int(struct.unpack_from("!H", payload)[0])
