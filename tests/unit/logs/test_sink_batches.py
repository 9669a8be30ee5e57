"""CloudWatch batching within PutLogEvents limits, S3 URLs, retry backoff."""

from __future__ import annotations

import pytest

from openssm.logs.shipper import retry_delay
from openssm.logs.sinks import (
    EVENT_OVERHEAD,
    MAX_BATCH_BYTES,
    MAX_BATCH_EVENTS,
    MAX_EVENT_BYTES,
    SinkError,
    next_batch,
    parse_s3_url,
    s3_url,
)


def test_only_whole_lines_until_final() -> None:
    data = b"one\ntwo\n\nthr"
    batch = next_batch(data, 100, final=False)
    assert batch.messages == ["one", "two"] and batch.end_offset == 100 + len(b"one\ntwo\n\n")
    rest = next_batch(data[batch.end_offset - 100 :], batch.end_offset, final=True)
    assert rest.messages == ["thr"] and rest.end_offset == 100 + len(data)


def test_batches_respect_event_count_and_bytes() -> None:
    many = b"x\n" * (MAX_BATCH_EVENTS + 5)
    batch = next_batch(many, 0, final=False)
    assert len(batch.messages) == MAX_BATCH_EVENTS and batch.end_offset == 2 * MAX_BATCH_EVENTS
    big_line = b"y" * 100_000 + b"\n"
    batch = next_batch(big_line * 20, 0, final=False)
    assert sum(len(m) + EVENT_OVERHEAD for m in batch.messages) <= MAX_BATCH_BYTES
    assert len(batch.messages) == MAX_BATCH_BYTES // (100_000 + EVENT_OVERHEAD)


def test_an_oversized_line_is_cut_to_the_event_limit() -> None:
    batch = next_batch(b"z" * (MAX_EVENT_BYTES + 10) + b"\n", 0, final=False)
    assert len(batch.messages[0]) == MAX_EVENT_BYTES


def test_s3_urls() -> None:
    assert s3_url("bucket", "a/b/", "s-1.log") == "s3://bucket/a/b/s-1.log"
    assert s3_url("bucket", "", "s-1.log") == "s3://bucket/s-1.log"
    assert parse_s3_url("s3://bucket/a/s-1.cast") == ("bucket", "a/s-1.cast")
    with pytest.raises(SinkError):
        parse_s3_url("https://bucket/x")


def test_backoff_doubles_up_to_the_maximum() -> None:
    assert [retry_delay(n, 1.0, 10.0) for n in range(6)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert retry_delay(10_000, 0.5, 300.0) == 300.0
