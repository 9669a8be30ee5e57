"""Recorder + shipper against moto's S3 and CloudWatch Logs servers, with a real store.

Large recordings go to S3 in multipart uploads; long transcripts go to CloudWatch Logs in several
batches, in order and once each; a failed upload is kept with its error and retried later.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import pathlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from tests.integration.logs_support import MotoServer, session_lines
from tests.support.session_rows import session_row

from openssm.bus.inprocess import InProcessBus
from openssm.clock import ManualClock
from openssm.logs.asciicast import read_cast
from openssm.logs.recorder import SessionRecorder
from openssm.logs.shipper import LogShipper
from openssm.logs.sinks import CloudWatchSink, S3Sink, SinkSettings
from openssm.services import ServerConfig, Services
from openssm.store import log_uploads
from openssm.store.db import database_url_for, make_engine, migrate
from openssm.store.secrets import SecretCipher
from openssm.store.tables import sessions

BUCKET = "records"
GROUP = "/openssm/test"
MiB = 1024 * 1024
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = MotoServer(tmp_path_factory.mktemp("moto") / "moto.log")
    server.client("s3").create_bucket(Bucket=BUCKET)
    server.client("logs").create_log_group(logGroupName=GROUP)
    yield server
    server.stop()


@pytest.fixture
async def services(tmp_path: pathlib.Path) -> AsyncIterator[Services]:
    """The server's services with a clock that moves only when a test says so (starting now, so
    that moto's CloudWatch Logs takes the events' timestamps)."""
    config = ServerConfig(data_dir=tmp_path, log_upload_retry_seconds=60.0)
    engine = make_engine(database_url_for(tmp_path))
    await migrate(engine)
    clock = ManualClock(dt.datetime.now(dt.UTC))
    yield Services(
        config=config, engine=engine, bus=InProcessBus(), cipher=SecretCipher.generate(), clock=clock
    )
    await engine.dispose()


def _session(session_id: str, **inputs: Any) -> dict[str, Any]:
    return {
        **session_row(session_id, None),
        "document_content": {"schemaVersion": "1.0", "sessionType": "Standard_Stream", "inputs": inputs},
        "start_date": dt.datetime.now(dt.UTC),
    }


async def _insert(services: Services, row: dict[str, Any]) -> None:
    async with services.engine.begin() as conn:
        await conn.execute(sa.insert(sessions).values(**row))


def _sinks(
    moto: MotoServer, *, endpoint: str | None = None, threshold: int = 5 * MiB
) -> tuple[S3Sink, CloudWatchSink]:
    settings = SinkSettings(
        region="us-east-1",
        s3_endpoint_url=endpoint or moto.endpoint,
        logs_endpoint_url=endpoint or moto.endpoint,
        multipart_threshold=threshold,
        multipart_chunk=threshold,
    )
    return S3Sink(settings), CloudWatchSink(settings)


async def _record(recorder: SessionRecorder, row: dict[str, Any], lines: int) -> list[str]:
    await recorder.on_start(row)
    await recorder.on_input(b'{"cols":132,"rows":43}', 3, 0.01)
    written = [
        f"{n:07d} {base64.b64encode(hashlib.sha256(str(n).encode()).digest()).decode()}" for n in range(lines)
    ]
    blob = "".join(line + "\r\n" for line in written).encode()
    for index, start in enumerate(range(0, len(blob), 1024)):
        await recorder.on_output(blob[start : start + 1024], 1, 0.02 + index * 1e-4)
    await recorder.on_end("Terminated", "done", 5.0)
    return written


async def test_large_records_go_multipart_and_long_transcripts_in_batches(
    services: Services, moto: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    row = _session(
        "admin-0123456789abcdef0",
        s3BucketName=BUCKET,
        s3KeyPrefix="p",
        s3EncryptionEnabled=True,
        cloudWatchLogGroupName=GROUP,
    )
    await _insert(services, row)
    s3_sink, logs_sink = _sinks(moto)
    shipper = LogShipper(services, s3=s3_sink, cloudwatch=logs_sink)
    written = await _record(SessionRecorder(services, shipper, row), row, 120_000)  # ~6 MiB of text

    queued = await log_uploads.for_session(services.engine, row["session_id"])
    assert sorted((u.sink, u.status) for u in queued) == [
        ("cloudwatch", "pending"),
        ("s3", "pending"),
        ("s3", "pending"),
        ("s3", "pending"),
    ]
    assert await shipper.run_once() == 4
    assert all(u.status == "done" for u in await log_uploads.for_session(services.engine, row["session_id"]))

    s3 = moto.client("s3")
    cast_head = s3.head_object(Bucket=BUCKET, Key=f"p/{row['session_id']}.cast")
    assert cast_head["ContentLength"] > 5 * MiB
    assert "-" in cast_head["ETag"]  # a multipart upload's ETag is "<md5>-<parts>"
    assert cast_head["ServerSideEncryption"] == "AES256"  # s3EncryptionEnabled
    cast = s3.get_object(Bucket=BUCKET, Key=f"p/{row['session_id']}.cast")["Body"].read().decode()
    header, events = read_cast(cast)
    assert (header["width"], header["height"]) == (132, 43)
    assert "".join(data for _, code, data in events if code == "o") == "".join(
        line + "\r\n" for line in written
    )
    events_text = s3.get_object(Bucket=BUCKET, Key=f"p/{row['session_id']}.jsonl")["Body"].read().decode()
    assert [json.loads(line)["event"] for line in events_text.splitlines()] == [
        "session_started",
        "session_ended",
    ]
    transcript = s3.get_object(Bucket=BUCKET, Key=f"p/{row['session_id']}.log")["Body"].read().decode()
    assert transcript.splitlines() == written

    messages = []
    token = None
    logs = moto.client("logs")
    while True:
        kwargs: dict[str, Any] = {
            "logGroupName": GROUP,
            "logStreamName": row["session_id"],
            "startFromHead": True,
        }
        if token:
            kwargs["nextToken"] = token
        page = logs.get_log_events(**kwargs)
        messages += [event["message"] for event in page["events"]]
        if not page["events"] or page["nextForwardToken"] == token:
            break
        token = page["nextForwardToken"]
    assert messages == written  # 120 000 lines: several PutLogEvents batches, in order, once each

    async with services.engine.connect() as conn:
        stored = (
            (await conn.execute(sa.select(sessions).where(sessions.c.session_id == row["session_id"])))
            .mappings()
            .one()
        )
    assert stored["output_s3_url"] == f"s3://{BUCKET}/p/{row['session_id']}.log"
    assert stored["output_cloudwatch_url"].endswith(f"log-group:{GROUP}:log-stream:{row['session_id']}")
    assert stored["recording_path"] == str(
        services.config.data_dir / "sessions" / f"{row['session_id']}.cast"
    )


async def test_a_failed_upload_keeps_its_error_and_waits_for_its_retry(
    services: Services, moto: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    row = _session("admin-00000000000000001", cloudWatchLogGroupName=GROUP, cloudWatchStreamingEnabled="true")
    await _insert(services, row)
    dead = "http://127.0.0.1:9"  # discard port: nothing listens
    s3_sink, logs_sink = _sinks(moto, endpoint=dead)
    shipper = LogShipper(services, s3=s3_sink, cloudwatch=logs_sink)
    recorder = SessionRecorder(services, shipper, row)
    await recorder.on_start(row)
    [streaming] = await log_uploads.for_session(services.engine, row["session_id"])
    assert streaming.status == "streaming"
    clock = services.clock
    assert isinstance(clock, ManualClock)
    written_ms = clock.now().timestamp() * 1000
    await recorder.on_output(b"first line\r\n", 1, 0.1)
    await recorder.on_end("Terminated", "done", 1.0)
    assert await shipper.run_once() == 0
    [failed] = await log_uploads.for_session(services.engine, row["session_id"])
    assert failed.status == "pending" and failed.attempts == 1
    assert failed.last_error is not None and "Could not connect" in failed.last_error
    assert failed.next_attempt_at == clock.now() + dt.timedelta(seconds=60)  # log_upload_retry_seconds
    clock.advance(59)
    assert await shipper.run_once() == 0  # not due yet: nothing is tried
    [waiting] = await log_uploads.for_session(services.engine, row["session_id"])
    assert waiting.attempts == 1

    # The sink is back and the retry is due: the line arrives once.
    shipper.cloudwatch = _sinks(moto)[1]
    clock.advance(1)
    assert await shipper.run_once() == 1
    assert session_lines(moto.client("logs"), GROUP, row["session_id"]) == ["first line"]
    [event] = moto.client("logs").get_log_events(logGroupName=GROUP, logStreamName=row["session_id"])[
        "events"
    ]
    assert event["timestamp"] == int(written_ms)  # when it was written, not when it was shipped


async def test_after_a_restart_streaming_uploads_are_finished(
    services: Services, moto: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sessions do not survive their node's restart: what was streaming ships the rest and completes."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    row = _session("admin-00000000000000002", cloudWatchLogGroupName=GROUP, cloudWatchStreamingEnabled=True)
    await _insert(services, row)
    recorder = SessionRecorder(services, None, row)
    await recorder.on_start(row)
    await recorder.on_output(b"before the crash\r\npartial", 1, 0.1)
    recorder._close_durably()  # the process dies here: no on_end
    shipper = LogShipper(services, s3=_sinks(moto)[0], cloudwatch=_sinks(moto)[1])
    await shipper._finish_orphaned_streams()
    [upload] = await log_uploads.for_session(services.engine, row["session_id"])
    assert upload.status == "pending"
    assert await shipper.run_once() == 1
    # The unfinished line was still in the transcript builder when the process died.
    assert session_lines(moto.client("logs"), GROUP, row["session_id"]) == ["before the crash"]
