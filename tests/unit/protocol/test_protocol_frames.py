"""Frame codec: round trips for arbitrary fields, the MessageId half swap, and bad input."""

from __future__ import annotations

import json
import struct
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openssm.protocol.frames import (
    FLAG_ACK,
    FRAME_OVERHEAD,
    MAX_FRAME_SIZE,
    Frame,
    FrameError,
    MessageType,
    PayloadFlag,
    ack_for,
    acked_sequence,
    decode,
    flag_of,
    flag_payload,
    go_json,
    parse_flag,
    peek,
    uuid_from_wire,
    uuid_to_wire,
)

message_types = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyz_ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1, max_size=32
)
uuids = st.uuids(version=4) | st.builds(uuid.UUID, int=st.integers(0, (1 << 128) - 1))
frames = st.builds(
    Frame,
    message_type=message_types,
    sequence_number=st.integers(-(1 << 63), (1 << 63) - 1),
    flags=st.integers(0, (1 << 64) - 1),
    payload_type=st.integers(0, (1 << 32) - 1),
    payload=st.binary(max_size=2048),
    message_id=uuids,
    created_date=st.integers(1, (1 << 64) - 1),
    schema_version=st.integers(0, (1 << 32) - 1),
)


@given(frames)
def test_encode_decode_round_trip(frame: Frame) -> None:
    raw = frame.encode()
    assert len(raw) == FRAME_OVERHEAD + len(frame.payload)
    assert decode(raw, verify_digest=True) == frame
    assert decode(raw).encode() == raw


@given(frames)
def test_an_owned_buffer_is_decoded_without_copying_the_payload(frame: Frame) -> None:
    received = bytearray(frame.encode())
    decoded = decode(received, verify_digest=True, owned=True)
    assert decoded == frame
    payload = decoded.payload
    # A read-only view of the handed-over buffer, not a copy of it.
    assert isinstance(payload, memoryview) and payload.readonly and payload.obj is received
    assert isinstance(decode(received).payload, bytes), "a buffer not handed over is copied"


@given(frames)
def test_header_layout(frame: Frame) -> None:
    raw = frame.encode()
    assert struct.unpack_from(">I", raw, 0)[0] == 116
    assert raw[4:36] == frame.message_type.encode().ljust(32, b" ")
    assert struct.unpack_from(">I", raw, 116)[0] == len(frame.payload)
    assert raw[64:80] == uuid_to_wire(frame.message_id)


@given(uuids)
def test_uuid_halves_are_swapped_on_the_wire(value: uuid.UUID) -> None:
    wire = uuid_to_wire(value)
    assert wire == value.bytes[8:] + value.bytes[:8]
    assert uuid_from_wire(wire) == value


def test_uuid_swap_documented_example() -> None:
    value = uuid.UUID("01234567-89ab-cdef-0011-223344556677")
    assert uuid_to_wire(value).hex() == "001122334455667701234567" + "89abcdef"


@given(st.binary(max_size=FRAME_OVERHEAD - 1))
def test_short_frames_are_rejected(data: bytes) -> None:
    with pytest.raises(FrameError):
        decode(data)


def test_deeply_nested_json_payload_is_a_frame_error() -> None:
    frame = Frame(
        message_type="acknowledge", sequence_number=0, flags=0, payload_type=0, payload=b"[" * 100_000
    )
    with pytest.raises(FrameError, match="nested too deeply"):
        frame.json()


def test_oversized_frame_is_rejected_before_parsing() -> None:
    with pytest.raises(FrameError, match="exceeds limit"):
        decode(b"\x00" * (MAX_FRAME_SIZE + 1))


def test_zero_header_length_and_empty_type_are_rejected() -> None:
    raw = bytearray(Frame("x", payload=b"p").encode())
    zero_header = bytes(b"\x00\x00\x00\x00" + raw[4:])
    with pytest.raises(FrameError, match="HeaderLength"):
        decode(zero_header)
    blank_type = bytes(raw[:4] + b" " * 32 + raw[36:])
    with pytest.raises(FrameError, match="MessageType"):
        decode(blank_type)


@given(frames, st.binary(min_size=1, max_size=64))
def test_digest_is_checked_only_on_request(frame: Frame, extra: bytes) -> None:
    tampered = frame.encode() + extra
    with pytest.raises(FrameError, match="digest"):
        decode(tampered, verify_digest=True)
    assert decode(tampered).payload == bytes(frame.payload) + extra


@given(frames)
def test_ack_for_names_the_acked_frame(frame: Frame) -> None:
    ack = ack_for(frame)
    assert (ack.message_type, ack.sequence_number, ack.flags, ack.payload_type) == (
        MessageType.ACKNOWLEDGE,
        0,
        FLAG_ACK,
        0,
    )
    assert list(json.loads(bytes(ack.payload))) == [
        "AcknowledgedMessageType",
        "AcknowledgedMessageId",
        "AcknowledgedMessageSequenceNumber",
        "IsSequentialMessage",
    ]
    assert acked_sequence(ack) == frame.sequence_number


@given(
    message_type=st.sampled_from([MessageType.INPUT_STREAM_DATA, MessageType.OUTPUT_STREAM_DATA])
    | message_types,
    sequence=st.integers(-(1 << 63), (1 << 63) - 1),
    message_id=uuids,
)
def test_ack_payload_is_what_go_json_writes(message_type: str, sequence: int, message_id: uuid.UUID) -> None:
    """Stream messages' acks are formatted directly (the hot path); byte for byte what go_json
    writes for the same body, as for any other message type."""
    frame = Frame(message_type, sequence, message_id=message_id)
    body = {
        "AcknowledgedMessageType": frame.message_type,
        "AcknowledgedMessageId": str(message_id),
        "AcknowledgedMessageSequenceNumber": sequence,
        "IsSequentialMessage": True,
    }
    assert bytes(ack_for(frame).payload) == go_json(body)


@pytest.mark.parametrize("payload", [b"[]", b'{"AcknowledgedMessageSequenceNumber":"1"}', b"{}", b"nope"])
def test_acked_sequence_rejects_bad_acks(payload: bytes) -> None:
    with pytest.raises(FrameError):
        acked_sequence(Frame(MessageType.ACKNOWLEDGE, payload=payload))


@pytest.mark.parametrize("flag", list(PayloadFlag))
def test_flag_payload_round_trip(flag: PayloadFlag) -> None:
    assert parse_flag(flag_payload(flag)) == flag
    assert flag_payload(flag) == bytes([0, 0, 0, flag.value])
    with pytest.raises(FrameError):
        parse_flag(b"\x00\x01")


@given(
    message_type=st.sampled_from(list(MessageType)),
    sequence=st.integers(min_value=-(2**63), max_value=2**63 - 1),
    payload_type=st.integers(min_value=0, max_value=2**32 - 1),
    payload=st.binary(max_size=300),
)
def test_peek_agrees_with_the_full_decoder(
    message_type: str, sequence: int, payload_type: int, payload: bytes
) -> None:
    data = Frame(message_type, sequence, 0, payload_type, payload).encode()
    head = peek(data)
    frame = decode(data)
    assert head.message_type == frame.message_type
    assert head.sequence_number == frame.sequence_number == sequence
    assert head.payload_type == frame.payload_type
    assert data[head.payload_offset :] == frame.payload


@given(st.binary(max_size=119))
def test_peek_refuses_short_input(data: bytes) -> None:
    with pytest.raises(FrameError):
        peek(data)


@given(st.binary(min_size=120, max_size=400))
def test_peek_refuses_what_decode_refuses(data: bytes) -> None:
    try:
        frame = decode(data)
    except FrameError:
        with pytest.raises(FrameError):
            peek(data)
        return
    assert peek(data).message_type == frame.message_type


def test_peek_refuses_bad_header_length_and_empty_type() -> None:
    data = bytearray(Frame("acknowledge", payload=b"{}").encode())
    data[0:4] = (10_000).to_bytes(4, "big")
    with pytest.raises(FrameError, match="runs past"):
        peek(bytes(data))
    blank = bytearray(Frame("acknowledge", payload=b"{}").encode())
    blank[4:36] = b" " * 32
    with pytest.raises(FrameError, match="empty"):
        peek(bytes(blank))


def test_flag_of_reads_flags_and_ignores_the_rest() -> None:
    for flag in PayloadFlag:
        assert flag_of(Frame(MessageType.INPUT_STREAM_DATA, 0, 0, 10, flag_payload(flag))) == flag
    assert flag_of(Frame(MessageType.INPUT_STREAM_DATA, 0, 0, 10, b"\x00\x01")) is None
    assert (
        flag_of(Frame(MessageType.INPUT_STREAM_DATA, 0, 0, 1, flag_payload(PayloadFlag.TERMINATE_SESSION)))
        is None
    )
