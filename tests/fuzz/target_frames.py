"""Fuzz target ``frames``: the 120-byte-header frame codec as a peer's bytes reach it.

The first input byte picks the decode options (digest check, fast-path zero digest, owned view);
the rest is one WebSocket binary message. A decoded frame must re-encode to a frame that decodes
to the same fields, and an ``acknowledge`` payload must be read or refused with FrameError.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from openssm.protocol import frames
from openssm.protocol.frames import Frame, FrameError, MessageType
from tests.fuzz import captures


def _same(a: Frame, b: Frame) -> bool:
    return (
        a.message_type == b.message_type
        and a.sequence_number == b.sequence_number
        and a.flags == b.flags
        and a.payload_type == b.payload_type
        and bytes(a.payload) == bytes(b.payload)
        and a.message_id == b.message_id
        and a.created_date == b.created_date
        and a.schema_version == b.schema_version
    )


def one_input(data: bytes) -> None:
    if not data:
        return
    options, message = data[0], data[1:]
    try:
        frame = frames.decode(
            bytearray(message) if options & 4 else message,
            verify_digest=bool(options & 1),
            allow_no_digest=bool(options & 2),
            owned=bool(options & 4),
        )
    except FrameError:
        return
    if frame.message_type.isascii() and len(frame.message_type) <= 32:
        again = frames.decode(frame.encode(), verify_digest=True)
        assert _same(frame, again), (frame, again)
    if frame.message_type == MessageType.ACKNOWLEDGE:
        try:
            frames.acked_sequence(frame)
        except FrameError:
            pass
    if frame.is_stream:
        ack = frames.ack_for(frame)
        assert frames.acked_sequence(ack) == frame.sequence_number
    if frame.payload_type == frames.PayloadType.FLAG:
        try:
            frames.parse_flag(frame.payload)
        except FrameError:
            pass


def setup() -> Callable[[bytes], None]:
    return one_input


def seeds() -> Iterator[bytes]:
    """Every captured frame, decoded plain, with its digest checked, and as an owned buffer."""
    for message in captures.binary_messages():
        for options in (0, 1, 4):
            yield bytes([options]) + message
