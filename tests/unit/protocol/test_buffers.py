"""Receive buffers that skip the zero-fill."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openssm.protocol.buffers import MIN_UNCLEARED, receive_buffer


@given(st.integers(min_value=0, max_value=4 * MIN_UNCLEARED))
def test_a_buffer_has_the_size_asked_and_takes_writes(size: int) -> None:
    buffer = receive_buffer(size)
    assert isinstance(buffer, bytearray) and len(buffer) == size
    view = memoryview(buffer)
    view[:] = b"\xab" * size
    assert buffer == b"\xab" * size


def test_small_buffers_are_cleared() -> None:
    # Below the threshold it is an ordinary bytearray: zeroed, as callers of bytearray(n) expect.
    assert receive_buffer(MIN_UNCLEARED - 1) == bytes(MIN_UNCLEARED - 1)


def test_a_negative_size_is_refused() -> None:
    with pytest.raises(ValueError):
        receive_buffer(-1)


def test_an_impossible_size_raises_memory_error() -> None:
    with pytest.raises(MemoryError):
        receive_buffer(1 << 62)
