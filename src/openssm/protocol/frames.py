"""Session Manager binary frame codec (sans-I/O).

Every binary WebSocket message on the data and control channels is one frame: a 120-byte
big-endian header followed by the payload. See ``session-manager-protocol.md`` §2.2.
"""

from __future__ import annotations

import enum
import hashlib
import json
import struct
import time
import uuid
from collections.abc import Sequence
from typing import Any, Final

from openssm.errors import RemoteProtocolError
from openssm.protocol.values import Value

HEADER = struct.Struct(">I32sIQqQ16s32sII")
HEADER_LENGTH: Final = 116  # offset of PayloadLength; the length field itself is not counted
FRAME_OVERHEAD: Final = HEADER.size  # 120
# Where SequenceNumber (int64) and PayloadDigest (32 bytes) sit, for a relay that edits a frame in place.
SEQUENCE_OFFSET: Final = struct.calcsize(">I32sIQ")
DIGEST_OFFSET: Final = struct.calcsize(">I32sIQqQ16s")
_SEQUENCE = struct.Struct(">q")
_UINT32 = struct.Struct(">I")  # HeaderLength, PayloadLength
# What a relay reads of a header (see peek), in one unpack: HeaderLength, MessageType,
# SequenceNumber and PayloadType; the fields between them are skipped (pad bytes).
_HEAD = struct.Struct(">I32s12xq56xI")
assert _HEAD.size == HEADER_LENGTH
SCHEMA_VERSION: Final = 1
# Bound on anything we decode from the network; real peers send <= ~120 kB (job replies).
MAX_FRAME_SIZE: Final = 1 << 20
# PayloadDigest of a stream message sent without one: only between OpenSSM ends that agreed to it
# (the fast path, see ``openssm.transport.mux``). AWS's programs always get, and send, real digests.
NO_DIGEST: Final = bytes(32)


class FrameError(RemoteProtocolError, ValueError):
    """A frame that cannot be decoded or fails validation."""


class MessageType(enum.StrEnum):
    INPUT_STREAM_DATA = "input_stream_data"
    OUTPUT_STREAM_DATA = "output_stream_data"
    ACKNOWLEDGE = "acknowledge"
    CHANNEL_CLOSED = "channel_closed"
    START_PUBLICATION = "start_publication"
    PAUSE_PUBLICATION = "pause_publication"
    AGENT_SESSION_STATE = "agent_session_state"
    INTERACTIVE_SHELL = "interactive_shell"
    AGENT_JOB = "agent_job"
    AGENT_TASK_ACKNOWLEDGE = "agent_task_acknowledge"
    AGENT_JOB_REPLY_ACK = "agent_job_reply_ack"
    AGENT_TASK_COMPLETE = "agent_task_complete"
    AGENT_JOB_ACK = "agent_job_ack"
    AGENT_JOB_REPLY = "agent_job_reply"
    AGENT_TELEMETRY = "agent_telemetry"


class PayloadType(enum.IntEnum):
    NONE = 0
    OUTPUT = 1
    ERROR = 2
    SIZE = 3
    PARAMETER = 4
    HANDSHAKE_REQUEST = 5
    HANDSHAKE_RESPONSE = 6
    HANDSHAKE_COMPLETE = 7
    ENC_CHALLENGE_REQUEST = 8
    ENC_CHALLENGE_RESPONSE = 9
    FLAG = 10
    STDERR = 11
    EXIT_CODE = 12


class PayloadFlag(enum.IntEnum):
    """Values carried by a PayloadType.FLAG message (4-byte big-endian)."""

    DISCONNECT_TO_PORT = 1
    TERMINATE_SESSION = 2
    CONNECT_TO_PORT_ERROR = 3


# Header ``Flags`` values as the real programs use them.
FLAG_DATA: Final = 0
FLAG_SYN: Final = 1
FLAG_ACK: Final = 3

STREAM_TYPES: Final = frozenset({MessageType.INPUT_STREAM_DATA, MessageType.OUTPUT_STREAM_DATA})


def now_millis() -> int:
    return int(time.time() * 1000)


def uuid_to_wire(value: uuid.UUID) -> bytes:
    """UUIDs travel with their 64-bit halves swapped (low half first)."""
    raw = value.bytes
    return raw[8:] + raw[:8]


def uuid_from_wire(raw: bytes) -> uuid.UUID:
    return uuid.UUID(bytes=raw[8:16] + raw[0:8])


# A payload as sent or received: bytes, or a read-only view of a received message (see decode).
Payload = bytes | memoryview


class Frame(Value):
    """One Session Manager message (``ClientMessage``/``AgentMessage``); a new MessageId and the
    time now as CreatedDate unless given."""

    __slots__ = (
        "created_date",
        "flags",
        "message_id",
        "message_type",
        "payload",
        "payload_type",
        "schema_version",
        "sequence_number",
    )
    message_type: str
    sequence_number: int
    flags: int
    payload_type: int
    payload: Payload
    message_id: uuid.UUID
    created_date: int
    schema_version: int

    def __init__(
        self,
        message_type: str,
        sequence_number: int = 0,
        flags: int = 0,
        payload_type: int = 0,
        payload: Payload = b"",
        message_id: uuid.UUID | None = None,
        created_date: int | None = None,
        schema_version: int = SCHEMA_VERSION,
    ) -> None:
        setter = object.__setattr__
        setter(self, "message_type", message_type)
        setter(self, "sequence_number", sequence_number)
        setter(self, "flags", flags)
        setter(self, "payload_type", payload_type)
        setter(self, "payload", payload)
        setter(self, "message_id", uuid.uuid4() if message_id is None else message_id)
        setter(self, "created_date", now_millis() if created_date is None else created_date)
        setter(self, "schema_version", schema_version)

    def with_payload(self, payload: Payload) -> Frame:
        """This frame with another payload (a decrypted one), everything else kept."""
        return Frame(
            self.message_type,
            self.sequence_number,
            self.flags,
            self.payload_type,
            payload,
            self.message_id,
            self.created_date,
            self.schema_version,
        )

    def encode(self, *, digest: bool = True) -> bytes:
        """Wire bytes. ``digest=False`` leaves PayloadDigest zero (fast path only)."""
        pieces = encode_pieces(
            self.message_type,
            self.sequence_number,
            self.flags,
            self.payload_type,
            (self.payload,),
            message_id=self.message_id,
            created_date=self.created_date,
            schema_version=self.schema_version,
            digest=digest,
        )
        return b"".join(pieces)

    def json(self) -> Any:
        """The payload parsed as JSON (acks, handshake, control messages)."""
        try:
            return json.loads(bytes(self.payload))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise FrameError(f"{self.message_type} payload is not JSON: {exc}") from exc
        except RecursionError as exc:  # a deeply nested payload: refuse it, do not crash on it
            raise FrameError(f"{self.message_type} payload is nested too deeply") from exc

    @property
    def is_stream(self) -> bool:
        return self.message_type in STREAM_TYPES


PayloadParts = Sequence[bytes | memoryview]


def encode_pieces(
    message_type: str,
    sequence_number: int,
    flags: int,
    payload_type: int,
    parts: PayloadParts,
    *,
    message_id: uuid.UUID | None = None,
    created_date: int | None = None,
    schema_version: int = SCHEMA_VERSION,
    digest: bool = True,
) -> list[bytes | memoryview]:
    """A frame as pieces to send in order, its header then ``parts`` themselves, uncopied: the
    data channel joins them once, into the WebSocket frame it masks."""
    type_bytes = message_type.encode("ascii")
    if len(type_bytes) > 32:
        raise FrameError(f"message type too long: {message_type!r}")
    length = sum(map(len, parts))
    hasher = None
    if digest:
        hasher = hashlib.sha256()
        for part in parts:
            hasher.update(part)
    header = HEADER.pack(
        HEADER_LENGTH,
        type_bytes.ljust(32, b" "),
        schema_version,
        now_millis() if created_date is None else created_date,
        sequence_number,
        flags,
        uuid_to_wire(uuid.uuid4() if message_id is None else message_id),
        NO_DIGEST if hasher is None else hasher.digest(),
        payload_type,
        length,
    )
    return [header, *parts]


class FrameHead(Value):
    """What a relay needs of a frame (the gateway's relay and taps), read from the header alone:
    the payload is neither decoded, copied nor checked against its digest."""

    __slots__ = ("message_type", "payload_offset", "payload_type", "sequence_number")
    message_type: str
    sequence_number: int
    payload_type: int
    payload_offset: int  # where the payload starts; it runs to the end of the frame

    def __init__(
        self, message_type: str, sequence_number: int, payload_type: int, payload_offset: int
    ) -> None:
        object.__setattr__(self, "message_type", message_type)
        object.__setattr__(self, "sequence_number", sequence_number)
        object.__setattr__(self, "payload_type", payload_type)
        object.__setattr__(self, "payload_offset", payload_offset)


def _message_type(size: int, header_length: int, type_bytes: bytes) -> str:
    """The header checks every reader makes (``decode`` and ``peek``): the payload offset lies
    inside the frame and MessageType is not empty."""
    if header_length == 0:
        raise FrameError("HeaderLength is 0")
    if header_length + 4 > size:
        raise FrameError(f"HeaderLength {header_length} runs past the frame")
    message_type = type_bytes.replace(b"\x00", b"").strip().decode("ascii", "replace")
    if not message_type:
        raise FrameError("MessageType is empty")
    return message_type


def peek(data: bytes) -> FrameHead:
    """The header facts of one frame, by the same rules as :func:`decode` (but no size bound: a
    relay passes on what its WebSocket took); raises FrameError on anything that is not a frame."""
    if len(data) < FRAME_OVERHEAD:
        raise FrameError(f"frame of {len(data)} bytes is shorter than the 120-byte header")
    header_length, type_bytes, sequence_number, payload_type = _HEAD.unpack_from(data)
    message_type = _message_type(len(data), header_length, type_bytes)
    return FrameHead(message_type, sequence_number, payload_type, header_length + 4)


def sequence_of(data: bytes) -> int:
    """The SequenceNumber of an encoded frame, read in place (nothing else checked: see :func:`peek`)."""
    return int(_SEQUENCE.unpack_from(data, SEQUENCE_OFFSET)[0])


def renumbered(data: bytes, sequence: int) -> bytes:
    """The encoded frame with another SequenceNumber (the payload digest does not cover the header)."""
    out = bytearray(data)
    _SEQUENCE.pack_into(out, SEQUENCE_OFFSET, sequence)
    return bytes(out)


def has_standard_header(data: bytes) -> bool:
    """Whether the encoded frame's payload starts right after the 120-byte header, as peers write it."""
    return int(_UINT32.unpack_from(data)[0]) == HEADER_LENGTH


def with_payload(data: bytes, payload: bytes) -> bytes:
    """The encoded frame ``data`` (with the standard header) carrying ``payload`` instead: its digest
    and length redone, every other header field kept."""
    header = bytearray(data[:FRAME_OVERHEAD])
    header[DIGEST_OFFSET : DIGEST_OFFSET + 32] = hashlib.sha256(payload).digest()
    _UINT32.pack_into(header, HEADER_LENGTH, len(payload))
    return bytes(header) + payload


def decode(
    data: bytes | bytearray,
    *,
    verify_digest: bool = False,
    allow_no_digest: bool = False,
    owned: bool = False,
) -> Frame:
    """Decode one frame. The payload runs to the end of ``data`` (as both real peers read it).

    ``verify_digest`` checks PayloadDigest (as AWS's plugin does); ``allow_no_digest`` then lets a
    zero digest through unchecked, for a peer that agreed to send none (the fast path).

    The payload is a copy in ``bytes``, unless ``owned``: then ``data`` is handed over (nothing
    changes it afterwards) and the payload is a read-only view of it. A data channel's received
    messages are, and copying each one again was a tenth of a receiving endpoint's CPU.
    """
    if len(data) > MAX_FRAME_SIZE:
        raise FrameError(f"frame of {len(data)} bytes exceeds limit {MAX_FRAME_SIZE}")
    if len(data) < FRAME_OVERHEAD:
        raise FrameError(f"frame of {len(data)} bytes is shorter than the 120-byte header")
    (
        header_length,
        type_bytes,
        schema_version,
        created_date,
        sequence_number,
        flags,
        message_id,
        digest,
        payload_type,
        _payload_length,
    ) = HEADER.unpack_from(data)
    message_type = _message_type(len(data), header_length, type_bytes)
    payload: Payload = memoryview(data)[header_length + 4 :].toreadonly()
    if not owned:
        payload = bytes(payload)  # one copy, whatever ``data`` is
    if (
        verify_digest
        and payload
        and not (allow_no_digest and digest == NO_DIGEST)
        and hashlib.sha256(payload).digest() != digest
    ):
        raise FrameError("payload digest mismatch")
    return Frame(
        message_type=message_type,
        sequence_number=sequence_number,
        flags=flags,
        payload_type=payload_type,
        payload=payload,
        message_id=uuid_from_wire(message_id),
        created_date=created_date,
        schema_version=schema_version,
    )


def go_json(value: Any) -> bytes:
    """Compact JSON as Go's encoding/json writes it (HTML characters escaped)."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return text.encode("utf-8")


# The acknowledge payload of a stream message, as go_json writes it: both ends build one per message
# received, and formatting it costs a fifth of go_json's dict, dumps and three replaces (2 against
# 9.5 microseconds). Only for the two stream types, whose names need no JSON escaping.
_STREAM_ACK_BODY: Final = (
    b'{"AcknowledgedMessageType":"%s","AcknowledgedMessageId":"%s",'
    b'"AcknowledgedMessageSequenceNumber":%d,"IsSequentialMessage":true}'
)
_STREAM_TYPE_BYTES: Final = {kind.value: kind.value.encode("ascii") for kind in STREAM_TYPES}


def ack_for(frame: Frame) -> Frame:
    """The acknowledge frame for a received stream frame (byte-identical payload to the real peers)."""
    kind = _STREAM_TYPE_BYTES.get(frame.message_type)
    if kind is not None:
        payload = _STREAM_ACK_BODY % (kind, str(frame.message_id).encode("ascii"), frame.sequence_number)
        return Frame(MessageType.ACKNOWLEDGE, 0, FLAG_ACK, PayloadType.NONE, payload)
    body = {
        "AcknowledgedMessageType": frame.message_type,
        "AcknowledgedMessageId": str(frame.message_id),
        "AcknowledgedMessageSequenceNumber": frame.sequence_number,
        "IsSequentialMessage": True,
    }
    return Frame(MessageType.ACKNOWLEDGE, 0, FLAG_ACK, PayloadType.NONE, go_json(body))


def acked_sequence(frame: Frame) -> int:
    """The sequence number an ``acknowledge`` frame refers to (acks match by number only)."""
    body = frame.json()
    if not isinstance(body, dict):
        raise FrameError("acknowledge payload is not an object")
    seq = body.get("AcknowledgedMessageSequenceNumber")
    if not isinstance(seq, int) or isinstance(seq, bool):
        raise FrameError("acknowledge lacks AcknowledgedMessageSequenceNumber")
    return seq


def flag_payload(flag: PayloadFlag) -> bytes:
    return struct.pack(">I", int(flag))


def parse_flag(payload: Payload) -> int:
    if len(payload) < 4:
        raise FrameError("flag payload shorter than 4 bytes")
    value: int = struct.unpack_from(">I", payload)[0]
    return value


def flag_of(frame: Frame) -> int | None:
    """The flag a FLAG message carries; None for any other message, or for a flag payload too
    short to hold one (which both ends of a port session ignore)."""
    if frame.payload_type != PayloadType.FLAG or len(frame.payload) < 4:
        return None
    return parse_flag(frame.payload)
