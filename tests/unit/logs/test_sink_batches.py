"""CloudWatch batching within PutLogEvents limits, S3 URLs, retry backoff."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openssm.logs.shipper import retry_delay
from openssm.logs.sinks import (
    EVENT_OVERHEAD,
    MAX_BATCH_BYTES,
    MAX_BATCH_EVENTS,
    MAX_EVENT_BYTES,
    SESSION_EVENT_BYTES,
    SessionEventHeader,
    SinkError,
    next_batch,
    parse_s3_url,
    s3_url,
    session_events,
)

HEADER = SessionEventHeader(
    region="eu-west-1",
    target="mi-0123456789abcdef0",
    owner_arn="arn:aws:iam::123456789012:user/alice",
    run_as_user="ssm-user",
    session_id="alice-0123456789abcdef0",
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


def test_session_events_are_aws_json_session_events() -> None:
    [event] = session_events(HEADER, ["$ ls\t-l", "total 0\r"], [1_700_000_000_000, 1_700_000_000_500])
    assert event["timestamp"] == 1_700_000_000_500  # the time of its last line
    assert json.loads(event["message"]) == {
        "eventVersion": "1.0",
        "eventTime": "2023-11-14T22:13:20Z",
        "awsRegion": "eu-west-1",
        "target": {"id": "mi-0123456789abcdef0"},
        "userIdentity": {"arn": "arn:aws:iam::123456789012:user/alice"},
        "runAsUser": "ssm-user",
        "sessionId": "alice-0123456789abcdef0",
        "sessionData": ["$ ls -l", "total 0"],
    }


# Lines that fit an event (at most 2 bytes a character, nothing escaped), in any number and size mix.
PLAIN = st.characters(min_codepoint=0x20, max_codepoint=0x2FF, exclude_characters='"\\')


@settings(max_examples=50)
@given(st.lists(st.text(alphabet=PLAIN, max_size=90_000), min_size=1, max_size=12))
def test_session_events_keep_every_line_in_order_within_the_event_size(lines: list[str]) -> None:
    events = session_events(HEADER, lines, list(range(len(lines))))
    data = [line for event in events for line in json.loads(event["message"])["sessionData"]]
    assert data == [line.replace("\t", " ").replace("\r", "") for line in lines]
    for event in events:
        body = json.loads(event["message"])
        listed = len(json.dumps(body["sessionData"], ensure_ascii=False).encode())
        assert listed <= SESSION_EVENT_BYTES + 2
        assert len(event["message"].encode()) <= MAX_EVENT_BYTES


def test_one_huge_line_is_cut_to_what_an_event_holds() -> None:
    [event] = session_events(HEADER, ['"' * 300_000], [0])
    [line] = json.loads(event["message"])["sessionData"]
    assert 0 < len(line) < 300_000 and len(event["message"].encode()) <= MAX_EVENT_BYTES
