"""asciicast v2 writer: header, events, UTF-8 split across messages, resizes, input recording."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from openssm.logs.asciicast import AsciicastWriter, read_cast
from openssm.protocol.messages import usable_size


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    pieces, start = [], 0
    for point in points:
        pieces.append(data[start:point])
        start = point
    pieces.append(data[start:])
    return pieces


def test_header_takes_the_first_size_then_resizes_become_events() -> None:
    writer = AsciicastWriter(timestamp=1_700_000_000, title="s-1", record_input=False)
    text = writer.resize(120, 40, 0.1)
    text += writer.output(b"hello\r\n", 0.5)
    text += writer.resize(120, 40, 0.6)  # unchanged: nothing
    text += writer.resize(100, 30, 0.7)
    text += writer.input(b"secret", 0.8)  # input not recorded
    text += writer.finish(1.0)
    header, events = read_cast(text)
    assert header["version"] == 2 and header["width"] == 120 and header["height"] == 40
    assert header["timestamp"] == 1_700_000_000 and header["title"] == "s-1"
    assert events == [(0.5, "o", "hello\r\n"), (0.7, "r", "100x30")]


def test_output_before_size_uses_80x24_and_input_is_recorded_when_asked() -> None:
    writer = AsciicastWriter(timestamp=1, record_input=True)
    text = writer.output(b"$ ", 0.2) + writer.resize(100, 50, 0.3) + writer.input(b"ls\r", 0.4)
    header, events = read_cast(text)
    assert (header["width"], header["height"]) == (80, 24)
    assert events == [(0.2, "o", "$ "), (0.3, "r", "100x50"), (0.4, "i", "ls\r")]


def test_a_character_split_between_messages_is_written_whole_once() -> None:
    writer = AsciicastWriter(timestamp=1)
    euro = "€".encode()
    text = writer.output(b"a" + euro[:1], 0.1) + writer.output(euro[1:] + b"b", 0.2)
    _, events = read_cast(text)
    assert events == [(0.1, "o", "a"), (0.2, "o", "€b")]


def test_time_never_goes_backwards_and_broken_tail_is_flushed() -> None:
    writer = AsciicastWriter(timestamp=1)
    text = writer.output(b"x", 2.0) + writer.output(b"y", 1.0) + writer.output(b"\xe2\x82", 3.0)
    text += writer.finish(4.0)
    _, events = read_cast(text)
    assert [e[0] for e in events] == [2.0, 2.0, 4.0]
    assert events[-1][2] == "\ufffd"


def test_lines_are_json_with_escaped_controls() -> None:
    writer = AsciicastWriter(timestamp=1)
    line = writer.output(b"\x1b[1mbold\x1b[0m\n", 0.25).splitlines()[-1]
    assert json.loads(line) == [0.25, "o", "\x1b[1mbold\x1b[0m\n"]


@given(st.text(max_size=300), st.lists(st.integers(min_value=0, max_value=1200), max_size=8))
def test_any_split_gives_the_same_text(text: str, cuts: list[int]) -> None:
    data = text.encode("utf-8")
    writer = AsciicastWriter(timestamp=1)
    out = "".join(writer.output(piece, float(i)) for i, piece in enumerate(_split(data, cuts)))
    out += writer.finish(99.0)
    _, events = read_cast(out)
    assert "".join(e[2] for e in events if e[1] == "o") == text


def test_usable_size_is_strict() -> None:
    size = usable_size(b'{"cols":100,"rows":30}')
    assert size is not None and (size.cols, size.rows) == (100, 30)
    for bad in (
        b"",
        b"[]",
        b'{"cols":"1","rows":2}',
        b'{"cols":0,"rows":2}',
        b"x" * 2000,
        b'{"cols":true,"rows":1}',
    ):
        assert usable_size(bad) is None
