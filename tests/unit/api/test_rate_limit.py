"""The token buckets behind per-principal API rate limits."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openssm.api.rate_limit import TokenBuckets, family


def test_families() -> None:
    assert family("ssm:DescribeInstanceInformation") == "ssm:read"
    assert family("ssm:GetConnectionStatus") == family("ssm:ListCommands") == "ssm:read"
    assert family("ssm:StartSession") == family("ssm:UpdateInstanceInformation") == "ssm:write"
    assert family("iam:ListUsers") == "iam:read" and family("sts:AssumeRole") == "sts:write"


def test_burst_then_rate() -> None:
    buckets = TokenBuckets(rate=2, burst=3)
    key = ("arn:aws:iam::123456789012:user/a", "ssm:read")
    assert [buckets.take(key, 100.0) for _ in range(4)] == [True, True, True, False]
    assert not buckets.take(key, 100.4)  # 0.8 of a token
    assert buckets.take(key, 100.5)
    assert buckets.take(("arn:aws:iam::123456789012:user/b", "ssm:read"), 100.5)  # its own bucket
    assert buckets.take((key[0], "ssm:write"), 100.5)  # another family


def test_forgets_the_least_recently_used_key() -> None:
    buckets = TokenBuckets(rate=1, burst=1, max_keys=2)
    assert buckets.take(("a", "f"), 0) and buckets.take(("b", "f"), 0)
    assert not buckets.take(("a", "f"), 0)  # a is now the most recent
    assert buckets.take(("c", "f"), 0)  # b forgotten
    assert buckets.take(("b", "f"), 0)  # a fresh bucket


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 1.0), (1.0, 0.5)])
def test_bad_settings(rate: float, burst: float) -> None:
    with pytest.raises(ValueError):
        TokenBuckets(rate, burst)


@given(
    rate=st.floats(0.1, 100),
    burst=st.integers(1, 20),
    gaps=st.lists(st.floats(-5, 5), min_size=1, max_size=200),
)
def test_never_grants_more_than_burst_plus_rate_times_elapsed(
    rate: float, burst: int, gaps: list[float]
) -> None:
    buckets = TokenBuckets(rate=rate, burst=burst)
    now, granted = 1000.0, 0
    start = latest = now + gaps[0]  # the bucket is made at the first call
    for gap in gaps:
        now += gap  # the clock may even step back
        latest = max(latest, now)
        granted += buckets.take(("p", "f"), now)
        assert granted <= burst + rate * (latest - start) + 1e-6
