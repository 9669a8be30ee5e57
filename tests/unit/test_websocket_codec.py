"""The data-channel WebSocket codec (openssm.protocol.websocket), with aiohttp's framing as the oracle."""

from __future__ import annotations

import asyncio
import os
import struct

import pytest
from aiohttp import WSMsgType
from aiohttp._websocket.helpers import websocket_mask
from aiohttp._websocket.reader import WebSocketDataQueue, WebSocketReader
from aiohttp.base_protocol import BaseProtocol
from hypothesis import given, settings
from hypothesis import strategies as st

from openssm.protocol import websocket as ws


def feed(reader: ws.FrameReader, data: bytes, chunk: int) -> list[ws.Message]:
    """Everything in ``data``, read ``chunk`` bytes at a time at most, as the I/O layer reads."""
    out: list[ws.Message] = []
    view = memoryview(data)
    while view:
        target = reader.buffer()
        assert len(target) > 0
        count = min(len(target), len(view), chunk)
        target[:count] = view[:count]
        view = view[count:]
        out += reader.filled(count)
    return out


def wire(pieces: list[ws.Buffer]) -> bytes:
    return b"".join(bytes(piece) for piece in pieces)


def aiohttp_reads(data: bytes) -> list[tuple[WSMsgType, bytes]]:
    """What aiohttp's own reader makes of ``data`` (a server's reader when frames are masked)."""

    async def read() -> list[tuple[WSMsgType, bytes]]:
        loop = asyncio.get_running_loop()
        queue = WebSocketDataQueue(BaseProtocol(loop), 2**30, loop=loop)
        reader = WebSocketReader(queue, 2**24, False, False)  # no compression, text as bytes
        reader.feed_data(data)
        reader.feed_eof()
        messages: list[tuple[WSMsgType, bytes]] = []
        while True:
            try:
                message = await queue.read()
            except Exception:
                return messages
            messages.append((message.type, bytes(message.data)))

    return asyncio.run(read())


payloads = st.lists(st.binary(max_size=3000), min_size=1, max_size=5)


@settings(max_examples=150, deadline=None)
@given(
    payloads,
    st.booleans(),
    st.integers(min_value=1, max_value=5000),
    st.sampled_from([ws.OP_BINARY, ws.OP_TEXT]),
)
def test_frames_round_trip_and_match_aiohttp(
    messages: list[bytes], masked: bool, chunk: int, opcode: int
) -> None:
    if opcode == ws.OP_TEXT:
        messages = [message.hex().encode() for message in messages]
    frames = b""
    for message in messages:
        pieces: list[bytes | memoryview] = [message[:7], memoryview(message)[7:]]
        key = os.urandom(4) if masked else None
        frames += wire(ws.encode(opcode, pieces, mask_key=key, mask=websocket_mask))
    reader = ws.FrameReader(masked=masked, max_message=1 << 20, mask=websocket_mask)
    got = feed(reader, frames, chunk)
    assert [(m.opcode, bytes(m.data)) for m in got] == [(opcode, m) for m in messages]
    kind = WSMsgType.BINARY if opcode == ws.OP_BINARY else WSMsgType.TEXT
    assert aiohttp_reads(frames) == [(kind, m) for m in messages]  # aiohttp reads the same


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=0, max_size=200_000), st.booleans(), st.integers(min_value=1000, max_value=300_000))
def test_large_frames_are_read_into_their_own_buffer(payload: bytes, masked: bool, chunk: int) -> None:
    key = os.urandom(4) if masked else None
    data = wire(ws.encode(ws.OP_BINARY, [payload], mask_key=key, mask=websocket_mask)) * 2
    reader = ws.FrameReader(masked=masked, max_message=1 << 20, mask=websocket_mask)
    got = feed(reader, data, chunk)
    assert [bytes(m.data) for m in got] == [payload, payload]


@given(st.binary(max_size=500), st.binary(min_size=4, max_size=4))
def test_python_mask_matches_the_compiled_one(data: bytes, key: bytes) -> None:
    ours, theirs = bytearray(data), bytearray(data)
    ws.mask_python(key, ours)
    websocket_mask(key, theirs)
    assert ours == theirs


@pytest.mark.parametrize("length", [0, 125, 126, 65535, 65536, 1 << 20])
def test_header_lengths_use_the_shortest_form(length: int) -> None:
    head = ws.header(ws.OP_BINARY, length)
    assert len(head) == (2 if length < 126 else 4 if length < 65536 else 10)
    masked = ws.header(ws.OP_BINARY, length, mask_key=b"abcd")
    assert masked[1] & 0x80 and masked.endswith(b"abcd")


def frame_bytes(first: int, second: int, rest: bytes = b"") -> bytes:
    return bytes([first, second]) + rest


@pytest.mark.parametrize(
    ("data", "masked", "code", "words"),
    [
        (frame_bytes(0x82, 0x00), True, ws.CLOSE_PROTOCOL_ERROR, "must be masked"),
        (frame_bytes(0x82, 0x80, b"abcd"), False, ws.CLOSE_PROTOCOL_ERROR, "must not be masked"),
        (frame_bytes(0xC2, 0x00), False, ws.CLOSE_PROTOCOL_ERROR, "reserved bits"),
        (frame_bytes(0x83, 0x00), False, ws.CLOSE_PROTOCOL_ERROR, "unknown opcode"),
        (frame_bytes(0x09, 0x00), False, ws.CLOSE_PROTOCOL_ERROR, "cannot be fragmented"),
        (frame_bytes(0x89, 126, struct.pack("!H", 126)), False, ws.CLOSE_PROTOCOL_ERROR, "over 125"),
        (frame_bytes(0x80, 0x00), False, ws.CLOSE_PROTOCOL_ERROR, "continuation frame without"),
        (
            frame_bytes(0x02, 0x00) + frame_bytes(0x82, 0x00),
            False,
            ws.CLOSE_PROTOCOL_ERROR,
            "before the last",
        ),
        (frame_bytes(0x82, 127, struct.pack("!Q", 1 << 63)), False, ws.CLOSE_PROTOCOL_ERROR, "top bit"),
        (frame_bytes(0x82, 127, struct.pack("!Q", 2000)), False, ws.CLOSE_MESSAGE_TOO_BIG, "limit"),
        (frame_bytes(0x88, 0x01, b"x"), False, ws.CLOSE_PROTOCOL_ERROR, "one-byte"),
        (frame_bytes(0x88, 0x02, struct.pack("!H", 1005)), False, ws.CLOSE_PROTOCOL_ERROR, "close code"),
        (frame_bytes(0x88, 0x03, struct.pack("!H", 1000) + b"\xff"), False, ws.CLOSE_INVALID_DATA, "UTF-8"),
    ],
)
def test_protocol_violations_name_their_close_code(data: bytes, masked: bool, code: int, words: str) -> None:
    reader = ws.FrameReader(masked=masked, max_message=1000)
    with pytest.raises(ws.WebSocketProtocolError, match=words) as caught:
        feed(reader, data, 1)
    assert caught.value.code == code


def test_fragmented_messages_are_reassembled_around_control_frames() -> None:
    data = (
        frame_bytes(0x02, 3, b"abc")  # binary, not final
        + frame_bytes(0x89, 2, b"hi")  # a ping in the middle is allowed
        + frame_bytes(0x00, 3, b"def")  # continuation
        + frame_bytes(0x80, 1, b"g")  # final continuation
    )
    got = feed(ws.FrameReader(masked=False, max_message=100), data, 2)
    assert [(m.opcode, bytes(m.data)) for m in got] == [(ws.OP_PING, b"hi"), (ws.OP_BINARY, b"abcdefg")]


def test_a_fragmented_message_over_the_limit_is_refused() -> None:
    data = frame_bytes(0x02, 60, b"a" * 60) + frame_bytes(0x80, 60, b"b" * 60)
    with pytest.raises(ws.WebSocketProtocolError) as caught:
        feed(ws.FrameReader(masked=False, max_message=100), data, 1000)
    assert caught.value.code == ws.CLOSE_MESSAGE_TOO_BIG


def test_nothing_may_follow_a_close_frame() -> None:
    reader = ws.FrameReader(masked=False, max_message=100)
    closing = wire(ws.encode(ws.OP_CLOSE, [ws.close_payload(1000, "bye")]))
    got = feed(reader, closing, 100)
    assert got[0].opcode == ws.OP_CLOSE and ws.close_code(got[0].data) == 1000
    with pytest.raises(ws.WebSocketProtocolError, match="after a close"):
        feed(reader, frame_bytes(0x82, 0), 10)


def test_control_frames_cannot_carry_more_than_125_bytes() -> None:
    with pytest.raises(ValueError, match="125"):
        ws.encode(ws.OP_PING, [b"x" * 126])


def test_a_long_close_reason_is_cut_between_characters() -> None:
    payload = ws.close_payload(1008, "é" * 100)  # 200 bytes of UTF-8: cut to at most 123
    assert len(payload) <= 125
    ws.check_close_payload(payload)  # still valid UTF-8
    assert payload[2:].decode() == "é" * 61
