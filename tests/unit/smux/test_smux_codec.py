"""smux frame codec: exact layout, round trips, arbitrary splits, and rejection of bad input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openssm.protocol.smux import (
    Command,
    FrameParser,
    SmuxError,
    SmuxFrame,
    SmuxProtocolError,
    decode_frames,
    encode_frame,
    encode_update,
)


@st.composite
def frames(draw: st.DrawFn, version: int | None = None) -> SmuxFrame:
    chosen = draw(st.sampled_from([1, 2])) if version is None else version
    command = draw(st.sampled_from(list(Command)))
    if command is Command.UPD:
        data = encode_update(draw(st.integers(0, 2**32 - 1)), draw(st.integers(0, 2**32 - 1)))
    elif command is Command.PSH:
        data = draw(st.binary(max_size=3000))
    else:
        data = b""
    return SmuxFrame(chosen, command, draw(st.integers(0, 2**32 - 1)), data)


def test_header_is_little_endian_as_on_the_wire() -> None:
    # plugin-port-mux.jsonl #22: PSH of 19 bytes on stream 3
    assert encode_frame(1, Command.PSH, 3, b"hello from client 1").hex() == (
        "0102130003000000" + b"hello from client 1".hex()
    )
    assert encode_frame(1, Command.SYN, 0x01020304).hex() == "0100000004030201"
    assert encode_frame(2, Command.UPD, 5, encode_update(0x10, 0x10000)).hex() == (
        "0204080005000000" + "10000000" + "00000100"
    )


@given(st.lists(frames(), max_size=20))
def test_encode_decode_round_trip(original: list[SmuxFrame]) -> None:
    assert decode_frames(b"".join(frame.encode() for frame in original)) == original


@given(st.lists(frames(version=2), max_size=20), st.data())
def test_any_split_of_the_stream_yields_the_same_frames(
    original: list[SmuxFrame], data: st.DataObject
) -> None:
    wire = b"".join(frame.encode() for frame in original)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=30)))
    parser = FrameParser(2)
    decoded: list[SmuxFrame] = []
    for start, end in zip([0, *cuts], [*cuts, len(wire)], strict=True):
        decoded += parser.feed(wire[start:end])
    assert decoded == original
    assert parser.pending == 0


def test_a_read_only_view_is_parsed_in_place_and_a_writable_buffer_is_copied() -> None:
    wire = bytearray(b"".join(frame.encode() for frame in [SmuxFrame(2, Command.PSH, 3, b"x" * 100)] * 3))
    (first, *_) = FrameParser(2, views=True).feed(memoryview(wire).toreadonly())
    assert isinstance(first.data, memoryview) and first.data.obj is wire
    (copied, *_) = FrameParser(2, views=True).feed(wire)
    assert not (isinstance(copied.data, memoryview) and copied.data.obj is wire)
    wire[8:108] = b"y" * 100  # the writable buffer's owner may reuse it: the copy is unaffected
    assert bytes(copied.data) == b"x" * 100


@given(st.lists(frames(version=1), min_size=1, max_size=10), st.data())
def test_pending_is_only_the_incomplete_frame(original: list[SmuxFrame], data: st.DataObject) -> None:
    wire = b"".join(frame.encode() for frame in original)
    cut = data.draw(st.integers(0, len(wire) - 1))
    parser = FrameParser(1)
    complete = parser.feed(wire[:cut])
    consumed = sum(8 + len(frame.data) for frame in complete)
    assert complete == original[: len(complete)]
    assert parser.pending == cut - consumed < 8 + len(original[len(complete)].data)


def test_update_fields() -> None:
    frame = SmuxFrame(2, Command.UPD, 9, encode_update(2**32 + 7, 65536))
    assert frame.update_fields() == (7, 65536)
    with pytest.raises(SmuxProtocolError):
        SmuxFrame(2, Command.PSH, 9, b"12345678").update_fields()


# (version the session expects, bytes, error message)
BAD_HEADERS = [
    (None, bytes.fromhex("0300000003000000"), "unsupported smux version 3"),
    (None, bytes.fromhex("0105000003000000"), "unknown smux command 5"),
    (None, bytes.fromhex("02040400030000000000000000"), "UPD frame with 4-byte payload"),
    (1, bytes.fromhex("0200000003000000"), "version 2 on a version 1 session"),
]


@pytest.mark.parametrize(("expected_version", "wire", "message"), BAD_HEADERS)
def test_bad_headers_are_clear_errors(expected_version: int | None, wire: bytes, message: str) -> None:
    parser = FrameParser(expected_version)
    with pytest.raises(SmuxProtocolError, match=message):
        parser.feed(wire)
    # The byte stream has no resync point: the parser stays failed.
    with pytest.raises(SmuxProtocolError):
        parser.feed(encode_frame(1, Command.NOP, 0))


@pytest.mark.parametrize("views", [False, True])
@pytest.mark.parametrize(("expected_version", "wire", "message"), BAD_HEADERS)
def test_a_bad_header_split_across_feeds_is_the_same_clear_error(
    expected_version: int | None, wire: bytes, message: str, views: bool
) -> None:
    parser = FrameParser(expected_version, views=views)
    assert parser.feed(wire[:3]) == []
    with pytest.raises(SmuxProtocolError, match=message):
        parser.feed(wire[3:])


def test_frame_data_are_views_only_when_asked() -> None:
    wire = encode_frame(2, Command.PSH, 3, b"abc")
    assert isinstance(FrameParser(2).feed(wire)[0].data, bytes)
    view = FrameParser(2, views=True).feed(wire)[0].data
    assert isinstance(view, memoryview) and bytes(view) == b"abc"
    # Bytes held back from an earlier feed are copied once; the frame is still whole and right.
    split = FrameParser(2, views=True)
    assert split.feed(wire[:9]) == []
    assert bytes(split.feed(bytearray(wire[9:]))[0].data) == b"abc"


def test_only_a_straddling_frame_is_copied() -> None:
    """A frame split across two feeds is completed from the head of the second; the frames after
    it stay views of the second buffer (joining the whole second buffer to the held-back bytes
    copied every message a frame straddled into)."""
    wire = b"".join(encode_frame(2, Command.PSH, 3, bytes([n]) * 1000) for n in range(4))
    parser = FrameParser(2, views=True)
    (first,) = parser.feed(wire[:1500])
    second_message = wire[1500:]
    straddling, *rest = parser.feed(second_message)
    assert [bytes(frame.data) for frame in (first, straddling, *rest)] == [
        bytes([n]) * 1000 for n in range(4)
    ]
    assert all(isinstance(frame.data, memoryview) and frame.data.obj is second_message for frame in rest)
    assert parser.pending == 0


def test_header_is_checked_before_the_payload_arrives() -> None:
    with pytest.raises(SmuxProtocolError):
        FrameParser(1).feed(bytes.fromhex("0109ffff01000000"))


def test_pending_never_exceeds_one_maximal_frame() -> None:
    parser = FrameParser(1)
    header = bytes.fromhex("0102ffff03000000")
    assert parser.feed(header + b"x" * 65534) == []
    assert parser.pending == 8 + 65534
    (frame,) = parser.feed(b"y" + header[:3])
    assert len(frame.data) == 65535
    assert parser.pending == 3


def test_trailing_partial_frame_is_an_error_for_whole_buffers() -> None:
    with pytest.raises(SmuxProtocolError, match="trailing"):
        decode_frames(bytes.fromhex("01000000030000"))


@pytest.mark.parametrize(
    ("version", "stream_id", "data"),
    [(3, 1, b""), (1, -1, b""), (1, 2**32, b""), (1, 1, b"x" * 65536)],
)
def test_encode_rejects_what_the_header_cannot_carry(version: int, stream_id: int, data: bytes) -> None:
    with pytest.raises(SmuxError):
        encode_frame(version, Command.PSH, stream_id, data)
