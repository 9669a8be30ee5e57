"""The one clock: wall time (aware UTC datetimes) and monotonic seconds, injected where time matters.

Server components take it from ``Services.clock``; the pure cores take ``now`` as an argument
(``tick(now)``, ``evaluate(..., now=)``) and never read a clock themselves. Tests and simulations use
:class:`ManualClock`, whose time moves only when told, so nothing has to sleep to see a timeout.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Final, Protocol


class Clock(Protocol):
    def now(self) -> dt.datetime:
        """The current time, timezone-aware, in UTC."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin that never goes backwards (for durations and deadlines)."""


class SystemClock:
    """The machine's clocks."""

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    def monotonic(self) -> float:
        return time.monotonic()


SYSTEM_CLOCK: Final[Clock] = SystemClock()


class ManualClock:
    """A clock that stands still until :meth:`advance` (or :meth:`set`) moves it."""

    def __init__(self, start: dt.datetime | None = None, monotonic_start: float = 1000.0) -> None:
        self._now = (start or dt.datetime(2026, 1, 1, tzinfo=dt.UTC)).astimezone(dt.UTC)
        self._monotonic = monotonic_start

    def now(self) -> dt.datetime:
        return self._now

    def monotonic(self) -> float:
        return self._monotonic

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock does not go backwards")
        self._now += dt.timedelta(seconds=seconds)
        self._monotonic += seconds

    def set(self, moment: dt.datetime) -> None:
        """Jump the wall clock (as NTP might); the monotonic clock moves by the same amount if forward."""
        moment = moment.astimezone(dt.UTC)
        step = (moment - self._now).total_seconds()
        self._now = moment
        if step > 0:
            self._monotonic += step
