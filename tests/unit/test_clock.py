"""openssm.clock: the system clock is aware UTC; the manual clock moves only when told."""

from __future__ import annotations

import datetime as dt

import pytest

from openssm.clock import SYSTEM_CLOCK, ManualClock


def test_system_clock_is_aware_utc_and_monotonic_does_not_go_back() -> None:
    now = SYSTEM_CLOCK.now()
    assert now.tzinfo is not None and now.utcoffset() == dt.timedelta(0)
    first = SYSTEM_CLOCK.monotonic()
    assert SYSTEM_CLOCK.monotonic() >= first


def test_manual_clock_moves_only_when_told() -> None:
    clock = ManualClock(dt.datetime(2026, 5, 1, 12, tzinfo=dt.UTC))
    start, mono = clock.now(), clock.monotonic()
    assert clock.now() == start and clock.monotonic() == mono
    clock.advance(90)
    assert clock.now() - start == dt.timedelta(seconds=90)
    assert clock.monotonic() - mono == 90
    with pytest.raises(ValueError):
        clock.advance(-1)
    clock.set(start)  # a wall-clock step back leaves the monotonic clock alone
    assert clock.now() == start and clock.monotonic() - mono == 90
