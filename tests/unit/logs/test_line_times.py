"""Transcript line times: fixed-width index, lookup by line end, never decreasing, defaults."""

from __future__ import annotations

import pathlib
import tempfile

from hypothesis import given
from hypothesis import strategies as st

from openssm.logs.line_times import RECORD_SIZE, record, times_path, timestamps
from openssm.logs.sinks import next_batch


def test_records_are_fixed_width() -> None:
    assert len(record(0, 0)) == RECORD_SIZE == len(record(10**15, 1_800_000_000_000))
    assert times_path(pathlib.Path("/d/s-1.log")) == pathlib.Path("/d/s-1.log.times")


def test_each_line_gets_the_first_record_at_or_after_its_end(tmp_path: pathlib.Path) -> None:
    index = tmp_path / "s.log.times"
    index.write_text(record(10, 1000) + record(25, 2000) + record(40, 3000))
    assert timestamps(index, [5, 10, 11, 25, 39, 40], 9999) == [1000, 1000, 2000, 2000, 3000, 3000]
    assert timestamps(index, [41, 50], 9999) == [9999, 9999]  # not indexed yet: the caller's "now"
    assert timestamps(index, [30], 9999) == [3000]
    assert timestamps(tmp_path / "missing", [1, 2], 7) == [7, 7]
    assert timestamps(index, [], 7) == []


def test_a_torn_last_record_is_ignored(tmp_path: pathlib.Path) -> None:
    index = tmp_path / "s.log.times"
    index.write_text(record(10, 1000) + record(20, 2000)[:12])
    assert timestamps(index, [5, 15], 5000) == [1000, 5000]


@given(st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=40), st.data())
def test_lookup_matches_a_linear_scan(gaps: list[int], data: st.DataObject) -> None:
    offsets, total = [], 0
    for gap in gaps:
        total += gap
        offsets.append(total)
    times = sorted(data.draw(st.lists(st.integers(1, 10**12), min_size=len(offsets), max_size=len(offsets))))
    ends = sorted(data.draw(st.lists(st.integers(1, total + 10), max_size=30)))
    with tempfile.TemporaryDirectory() as tmp:
        index = pathlib.Path(tmp) / "x.times"
        index.write_text("".join(record(o, t) for o, t in zip(offsets, times, strict=True)))
        expected = []
        for end in ends:
            later = [t for o, t in zip(offsets, times, strict=True) if o >= end]
            expected.append(later[0] if later else 0)
        running, monotonic = 0, []
        for value in expected:
            running = max(running, value)
            monotonic.append(running)
        assert timestamps(index, ends, 0) == monotonic


def test_batches_carry_each_line_end() -> None:
    batch = next_batch(b"ab\n\ncd\nef", 100, final=True)
    assert batch.messages == ["ab", "cd", "ef"]
    assert batch.line_ends == [103, 107, 109]
