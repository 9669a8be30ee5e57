"""Order statistics for the benches' and the scale tests' latency figures, written once."""

from __future__ import annotations

from collections.abc import Sequence


def percentile(samples: Sequence[float], q: float) -> float:
    """The sample at quantile ``q`` (0 to 1) by rank, none interpolated: the ``int(q * n)``-th
    smallest of ``n`` (0-based, the largest for q = 1), so p50 of an even count is the upper middle."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
