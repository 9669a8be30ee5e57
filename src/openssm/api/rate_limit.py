"""Per-principal API rate limits: a token bucket per (principal, action family), as AWS throttles
each account's calls per API. Pure: the caller passes the time (``Clock.monotonic``-style seconds).

A family is the service and the kind of call: ``ssm:read`` (Describe*, Get*, List*), ``ssm:write``
(everything else), and the same for IAM, STS, CloudTrail and the agent's services. A call over the
limit is answered with AWS's ``ThrottlingException`` (HTTP 400, "Rate exceeded"), which the AWS
CLI, the SDKs and the agent retry with backoff. Off unless configured (``--api-rate-limit``).
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict

READ_PREFIXES = ("Describe", "Get", "List")
THROTTLED_CODE = "ThrottlingException"
THROTTLED_MESSAGE = "Rate exceeded"


def family(action: str) -> str:
    """``ssm:DescribeSessions`` → ``ssm:read``; ``ssm:StartSession`` → ``ssm:write``."""
    service, _, name = action.partition(":")
    return f"{service}:{'read' if name.startswith(READ_PREFIXES) else 'write'}"


@dataclasses.dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class TokenBuckets:
    """``rate`` calls a second on average, bursts of ``burst``, per key; at most ``max_keys`` keys
    are remembered (the least recently used is forgotten: it starts again with a full bucket)."""

    def __init__(self, rate: float, burst: float, max_keys: int = 100_000) -> None:
        if rate <= 0 or burst < 1 or max_keys < 1:
            raise ValueError("rate must be > 0, burst >= 1, max_keys >= 1")
        self.rate, self.burst, self.max_keys = rate, burst, max_keys
        self._buckets: OrderedDict[tuple[str, str], _Bucket] = OrderedDict()

    def take(self, key: tuple[str, str], now: float) -> bool:
        """Spend a token of ``key``'s bucket at ``now``; False if it has none (throttle the call)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(self.burst, now)
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            elapsed = max(0.0, now - bucket.updated)  # a clock that steps back refills nothing
            bucket.tokens = min(self.burst, bucket.tokens + elapsed * self.rate)
            bucket.updated = max(bucket.updated, now)
        if bucket.tokens < 1:
            return False
        bucket.tokens -= 1
        return True
