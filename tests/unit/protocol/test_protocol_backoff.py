"""Backoff: AWS's retry shape (100-200 ms first, doubling, at most 5 s), bounded by count or window."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openssm.protocol.backoff import AWS_RETRIES, Backoff


def test_aws_shape() -> None:
    delays = list(Backoff(attempts=8).delays(random.Random(1)))
    assert 0.1 <= delays[0] <= 0.2
    assert delays[1] == pytest.approx(2 * delays[0])
    assert delays[-1] == 5.0 and max(delays) == 5.0
    assert len(list(AWS_RETRIES.delays())) == 4  # five attempts


@given(st.floats(0.0, 600.0), st.integers(0, 2**32))
def test_a_window_bounds_the_total_wait_and_is_used_up(window: float, seed: int) -> None:
    delays = list(Backoff(window=window).delays(random.Random(seed)))
    assert sum(delays) <= window + 1e-9
    assert all(0 < d <= 5.0 for d in delays)
    if window >= 0.2:
        assert sum(delays) == pytest.approx(window)  # the last try comes at the end of the window


def test_bad_shapes_are_refused() -> None:
    with pytest.raises(ValueError):
        Backoff(initial_min=0.3, initial_max=0.2)
    with pytest.raises(ValueError):
        Backoff(window=-1)
