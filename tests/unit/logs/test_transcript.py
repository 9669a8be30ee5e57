"""Plain-text transcript: escape sequences removed, line editing applied, any split of the input."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from openssm.logs.transcript import MAX_LINE_CHARS, TranscriptBuilder, strip_text


def test_colours_titles_and_bracketed_paste_are_removed() -> None:
    raw = "\x1b]0;root@vm: ~\x07\x1b[?2004h\x1b[01;32mroot@vm\x1b[00m:~# ls\r\n\x1b[?2004l\r\x1b[0m\x1b[01;34mdir\x1b[0m  file\r\n"
    assert strip_text(raw) == "root@vm:~# ls\ndir  file"


def test_line_editing_is_applied() -> None:
    assert strip_text("abc\b\bX\n") == "aXc"  # backspace moves, the next character overwrites
    assert strip_text("hello\rJ\n") == "Jello"
    assert strip_text("hello\r\x1b[Kbye\n") == "bye"
    assert strip_text("abcdef\x1b[3D\x1b[K!\n") == "abc!"
    assert strip_text("ab\x1b[1Cc\n") == "ab" + "c"
    assert strip_text("abcd\x1b[2G\x1b[P\n") == "acd"
    assert strip_text("tab\there\n") == "tab\there"


def test_other_escape_forms_leave_no_trace() -> None:
    assert strip_text("\x1b(Bplain\x1b7\x1b8 \x1bP1$r\x1b\\ok\n") == "plain ok"
    assert strip_text("a\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\b\n") == "alinkb"
    assert strip_text("bell\x07\x00\x0e\n") == "bell"


def test_lines_come_out_as_they_end_and_the_last_at_finish() -> None:
    builder = TranscriptBuilder()
    assert builder.feed(b"one\r\ntw") == ["one"]
    assert builder.pending == "tw"
    assert builder.feed(b"o\r\nthree") == ["two"]
    assert builder.finish() == ["three"]


def test_runaway_lines_are_cut() -> None:
    builder = TranscriptBuilder()
    lines = builder.feed(b"x" * (MAX_LINE_CHARS * 2 + 5))
    assert len(lines) == 2 and all(len(line) == MAX_LINE_CHARS for line in lines)


def test_unterminated_sequences_do_not_swallow_everything() -> None:
    text = "\x1b]" + "x" * 10_000 + "visible\n"
    assert strip_text(text).endswith("visible")


_pieces = st.sampled_from(
    ["a", "é", "€", "\r\n", "\n", "\r", "\b", "\x1b[1;31m", "\x1b[K", "\x1b]0;t\x07", "\x1b[2D", " ", "xyz"]
)


@given(st.lists(_pieces, max_size=60), st.lists(st.integers(min_value=0, max_value=400), max_size=10))
def test_any_split_gives_the_same_transcript(parts: list[str], cuts: list[int]) -> None:
    data = "".join(parts).encode()
    whole = TranscriptBuilder()
    expected = whole.feed(data) + whole.finish()
    split = TranscriptBuilder()
    got: list[str] = []
    start = 0
    for cut in [*sorted({min(c, len(data)) for c in cuts}), len(data)]:
        got += split.feed(data[start:cut])
        start = cut
    got += split.finish()
    assert got == expected
    assert all("\x1b" not in line and "\r" not in line for line in got)
