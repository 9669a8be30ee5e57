"""Read back-pressure: pause over the high-water mark, resume at half of it."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest

from openssm.transport.read_throttle import ReadThrottle


class Transport:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def pause_reading(self) -> None:
        self.calls.append("pause")

    def resume_reading(self) -> None:
        self.calls.append("resume")


def test_pauses_once_over_high_water_and_resumes_once_at_half() -> None:
    transport = Transport()
    throttle = ReadThrottle(100)
    throttle.transport = cast(asyncio.Transport, transport)
    throttle.added(100)
    assert transport.calls == [], "at the mark is not over it"
    throttle.added(1)
    throttle.added(50)
    assert transport.calls == ["pause"] and throttle.paused
    throttle.taken(100)
    assert transport.calls == ["pause"], "51 queued is still over half"
    throttle.taken(1)
    throttle.taken(10)
    assert transport.calls == ["pause", "resume"] and not throttle.paused
    assert throttle.queued == 40


def test_without_a_transport_it_only_counts() -> None:
    throttle = ReadThrottle(10)
    throttle.added(50)
    assert throttle.queued == 50 and not throttle.paused


def test_high_water_must_be_positive() -> None:
    with pytest.raises(ValueError):
        ReadThrottle(0)
