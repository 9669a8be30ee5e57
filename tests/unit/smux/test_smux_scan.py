"""Header-only smux scanning: the same frames as FrameParser, feed for feed, without the payloads."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.unit.smux.test_smux_codec import BAD_HEADERS, frames

from openssm.protocol.smux import (
    Command,
    FrameParser,
    SmuxError,
    SmuxFrame,
    SmuxProtocolError,
    encode_frame,
)
from openssm.protocol.smux_scan import FrameHeader, SmuxScanner


def _cuts(data: st.DataObject, size: int) -> list[tuple[int, int]]:
    cuts = sorted(data.draw(st.lists(st.integers(0, size), max_size=30)))
    return list(zip([0, *cuts], [*cuts, size], strict=True))


def _headers(frames: list[SmuxFrame]) -> list[FrameHeader]:
    return [FrameHeader(f.version, f.command, f.stream_id, len(f.data)) for f in frames]


def _outcome(feeder: FrameParser | SmuxScanner, chunk: bytes | memoryview) -> object:
    """What one feed gives: the frames' headers, or the error."""
    try:
        if isinstance(feeder, FrameParser):
            try:
                return _headers(feeder.feed(chunk))
            except BufferError:
                # FrameParser fails to clear its buffer when a bad header lies partly in it (the
                # buffer is still exported to a memoryview); it has recorded the real error though.
                return _outcome(feeder, b"")
        return feeder.feed(chunk)
    except SmuxError as exc:
        return (type(exc), str(exc))


@given(st.sampled_from([None, 1, 2]), st.lists(frames(), max_size=20), st.data())
def test_any_split_yields_what_the_parser_yields_feed_for_feed(
    version: int | None, original: list[SmuxFrame], data: st.DataObject
) -> None:
    wire = b"".join(frame.encode() for frame in original)
    parser, scanner = FrameParser(version), SmuxScanner(version)
    for start, end in _cuts(data, len(wire)):
        chunk = wire[start:end] if data.draw(st.booleans()) else memoryview(wire)[start:end]
        outcome = _outcome(scanner, chunk)
        assert outcome == _outcome(parser, chunk)
        if isinstance(outcome, list):
            assert scanner.pending == parser.pending


@given(st.lists(frames(version=2), max_size=20), st.data())
def test_headers_carry_command_stream_and_length(original: list[SmuxFrame], data: st.DataObject) -> None:
    wire = b"".join(frame.encode() for frame in original)
    scanner = SmuxScanner(2)
    scanned: list[FrameHeader] = []
    for start, end in _cuts(data, len(wire)):
        scanned += scanner.feed(memoryview(wire)[start:end])
    assert scanned == _headers(original)
    assert scanner.pending == 0


@given(st.lists(frames(version=1), max_size=8), st.binary(min_size=1, max_size=40), st.data())
def test_garbage_fails_as_in_the_parser(original: list[SmuxFrame], tail: bytes, data: st.DataObject) -> None:
    wire = b"".join(frame.encode() for frame in original) + tail
    parser, scanner = FrameParser(1), SmuxScanner(1)
    for start, end in _cuts(data, len(wire)):
        assert _outcome(scanner, wire[start:end]) == _outcome(parser, wire[start:end])
    # One more feed: a failed scanner stays failed, with the same error.
    nop = encode_frame(1, Command.NOP, 0)
    assert _outcome(scanner, nop) == _outcome(parser, nop)


@pytest.mark.parametrize(
    ("expected_version", "wire", "message"),
    [*BAD_HEADERS, (1, bytes.fromhex("0109ffff01000000"), "unknown smux command 9")],  # before the payload
)
def test_bad_headers_are_clear_errors(expected_version: int | None, wire: bytes, message: str) -> None:
    scanner = SmuxScanner(expected_version)
    with pytest.raises(SmuxProtocolError, match=message):
        scanner.feed(wire)
    with pytest.raises(SmuxProtocolError, match=message):
        scanner.feed(encode_frame(1, Command.NOP, 0))


def test_unsupported_version_is_refused_up_front() -> None:
    with pytest.raises(SmuxError):
        SmuxScanner(3)


def test_only_a_split_header_is_held() -> None:
    scanner = SmuxScanner(1)
    header = bytes.fromhex("0102ffff03000000")
    assert scanner.feed(header + b"x" * 65534) == []
    assert scanner.pending == 8 + 65534 and scanner._head == b""
    assert scanner.feed(b"y" + header[:7]) == [FrameHeader(1, Command.PSH, 3, 65535)]
    assert scanner.pending == 7 and len(scanner._head) == 7
    assert scanner.feed(header[7:]) == []
    assert scanner.pending == 8
