"""Where finished and running session records go: S3-compatible storage and CloudWatch Logs.

Blocking boto3 calls (the shipper runs them in a thread). Each call either succeeds or raises
:class:`SinkError`; the shipper retries with backoff, and the local file stays the source of truth,
so nothing is lost while a sink is down. botocore's own retries are kept short for that reason.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import pathlib
import threading
import urllib.parse
from typing import Any, Final

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from openssm.errors import OpenSSMError
from openssm.logs import line_times
from openssm.services import ServerConfig

# CloudWatch Logs PutLogEvents limits.
MAX_BATCH_EVENTS: Final = 10_000
MAX_BATCH_BYTES: Final = 1_048_576
EVENT_OVERHEAD: Final = 26
MAX_EVENT_BYTES: Final = 256 * 1024 - EVENT_OVERHEAD
READ_CHUNK: Final = 2 * 1024 * 1024  # how much of a log file one ship call looks at
# AWS's session logger puts the lines of one upload into one JSON event of at most this many bytes.
SESSION_EVENT_BYTES: Final = 200_000
SESSION_EVENT_VERSION: Final = "1.0"
DEFAULT_MULTIPART_THRESHOLD: Final = 8 * 1024 * 1024


class SinkError(OpenSSMError):
    """An upload failed; the message says why (never with credentials)."""


@dataclasses.dataclass(frozen=True, slots=True)
class SinkSettings:
    region: str
    s3_endpoint_url: str | None = None
    logs_endpoint_url: str | None = None
    multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD
    multipart_chunk: int = DEFAULT_MULTIPART_THRESHOLD

    @classmethod
    def from_config(cls, config: ServerConfig) -> SinkSettings:
        return cls(
            region=config.sink_region or config.region,
            s3_endpoint_url=config.s3_endpoint_url,
            logs_endpoint_url=config.logs_endpoint_url,
        )


_BOTO_CONFIG: Final = Config(
    retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=3, read_timeout=15
)


def _describe(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'Error')}: {error.get('Message', '')}"[:1000]
    return f"{type(exc).__name__}: {exc}"[:1000]


def s3_url(bucket: str, prefix: str, name: str) -> str:
    key = "/".join(part.strip("/") for part in (prefix, name) if part.strip("/"))
    return f"s3://{bucket}/{key}"


def parse_s3_url(url: str) -> tuple[str, str]:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc or not parts.path.strip("/"):
        raise SinkError(f"not an s3://bucket/key URL: {url}")
    return parts.netloc, parts.path.lstrip("/")


def s3_encryption(enabled: bool, kms_key_id: str) -> str | None:
    """What ``s3EncryptionEnabled`` (+ ``kmsKeyId``) asks of an upload."""
    if not enabled:
        return None
    return f"aws:kms:{kms_key_id}" if kms_key_id else "AES256"


def cloudwatch_url(region: str, account: str, group: str, stream: str) -> str:
    return f"arn:aws:logs:{region}:{account}:log-group:{group}:log-stream:{stream}"


class _LazyClient:
    """A boto3 client made on first use, once, whichever worker thread asks first."""

    def __init__(self, service: str, region: str | None, endpoint_url: str | None) -> None:
        self._service = service
        self._region = region
        self._endpoint_url = endpoint_url
        self._client: Any = None
        self._lock = threading.Lock()

    def __call__(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = boto3.client(
                    self._service,
                    region_name=self._region,
                    endpoint_url=self._endpoint_url,
                    config=_BOTO_CONFIG,
                )
            return self._client


class S3Sink:
    def __init__(self, settings: SinkSettings) -> None:
        self.settings = settings
        self.client = _LazyClient("s3", settings.region, settings.s3_endpoint_url)

    def upload(self, local_path: pathlib.Path, url: str, *, encryption: str | None = None) -> None:
        """Upload one file (multipart above the threshold, by boto3's transfer manager).

        ``encryption``: None, "AES256" (SSE-S3), "aws:kms" or "aws:kms:<key id>" (SSE-KMS)."""
        bucket, key = parse_s3_url(url)
        transfer = TransferConfig(
            multipart_threshold=self.settings.multipart_threshold,
            multipart_chunksize=self.settings.multipart_chunk,
            use_threads=False,
        )
        extra = {"ContentType": _content_type(local_path)}
        if encryption:
            kind, _, key_id = encryption.partition(":kms:")
            extra["ServerSideEncryption"] = "aws:kms" if encryption.startswith("aws:kms") else kind
            if key_id:
                extra["SSEKMSKeyId"] = key_id
        try:
            self.client().upload_file(str(local_path), bucket, key, ExtraArgs=extra, Config=transfer)
        except (BotoCoreError, ClientError, OSError) as exc:
            raise SinkError(f"S3 upload of {local_path.name} to {url} failed: {_describe(exc)}") from exc


def _content_type(path: pathlib.Path) -> str:
    if path.suffix == ".cast":
        return "application/x-asciicast"
    if path.suffix == ".jsonl":
        return "application/x-ndjson"
    return "text/plain; charset=utf-8"


@dataclasses.dataclass(frozen=True, slots=True)
class Batch:
    messages: list[str]
    end_offset: int  # file offset just after the last line in this batch
    line_ends: list[int] = dataclasses.field(default_factory=list)  # file offset after each message's line


def next_batch(data: bytes, start_offset: int, *, final: bool, max_bytes: int = MAX_BATCH_BYTES) -> Batch:
    """The lines of ``data`` (read from ``start_offset``) that fit one PutLogEvents call.

    Only whole lines go unless ``final`` (the session is over: the last partial line goes too).
    Empty lines are skipped (CloudWatch rejects empty messages) but their bytes are consumed.
    """
    messages: list[str] = []
    line_ends: list[int] = []
    size = 0
    position = 0
    while position < len(data) and len(messages) < MAX_BATCH_EVENTS:
        newline = data.find(b"\n", position)
        if newline < 0:
            if not final:
                break
            newline = len(data)
        raw = data[position:newline][:MAX_EVENT_BYTES]
        cost = len(raw) + EVENT_OVERHEAD
        if messages and size + cost > max_bytes:
            break
        text = raw.decode("utf-8", errors="replace").rstrip("\r")
        position = min(newline + 1, len(data))
        if text:
            messages.append(text)
            line_ends.append(start_offset + position)
            size += cost
    return Batch(messages, start_offset + position, line_ends)


@dataclasses.dataclass(frozen=True, slots=True)
class SessionEventHeader:
    """What every JSON event of a streamed session carries besides its lines (AWS's agent sends the
    same fields: eventVersion, eventTime, awsRegion, target.id, userIdentity.arn, runAsUser,
    sessionId, sessionData)."""

    region: str
    target: str
    owner_arn: str
    run_as_user: str
    session_id: str


def _json_size(line: str) -> int:
    """Bytes ``line`` takes in the event's JSON list (quotes, escapes and the separating comma)."""
    return len(json.dumps(line, ensure_ascii=False).encode("utf-8")) + 1


def session_events(
    header: SessionEventHeader, messages: list[str], stamps: list[int]
) -> list[dict[str, Any]]:
    """PutLogEvents events in AWS's JSON session shape: consecutive lines grouped into one event up
    to ``SESSION_EVENT_BYTES`` (tabs become spaces, carriage returns go, as AWS's agent does), each
    stamped with the time its last line was written."""
    groups: list[list[tuple[str, int]]] = []
    size = SESSION_EVENT_BYTES
    for message, ms in zip(messages, stamps, strict=True):
        line = message.replace("\t", " ").replace("\r", "")
        cost = _json_size(line)
        while cost > SESSION_EVENT_BYTES:  # one huge line: cut to what one event holds
            line = line[: len(line) * SESSION_EVENT_BYTES // cost - 1]
            cost = _json_size(line)
        if size + cost > SESSION_EVENT_BYTES:
            groups.append([])
            size = 0
        groups[-1].append((line, ms))
        size += cost
    events = []
    for group in groups:
        ms = group[-1][1]
        body = {
            "eventVersion": SESSION_EVENT_VERSION,
            "eventTime": dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "awsRegion": header.region,
            "target": {"id": header.target},
            "userIdentity": {"arn": header.owner_arn},
            "runAsUser": header.run_as_user,
            "sessionId": header.session_id,
            "sessionData": [line for line, _ in group],
        }
        events.append({"timestamp": ms, "message": json.dumps(body, ensure_ascii=False)})
    return events


class CloudWatchSink:
    def __init__(self, settings: SinkSettings) -> None:
        self.settings = settings
        self.client = _LazyClient("logs", settings.region, settings.logs_endpoint_url)
        self._streams: set[tuple[str, str]] = set()

    def _ensure_stream(self, group: str, stream: str) -> None:
        if (group, stream) in self._streams:
            return
        client = self.client()
        try:
            client.create_log_stream(logGroupName=group, logStreamName=stream)
        except client.exceptions.ResourceAlreadyExistsException:
            pass
        except client.exceptions.ResourceNotFoundException:
            # The preferences name a group that does not exist yet: create it rather than drop logs.
            try:
                client.create_log_group(logGroupName=group)
            except client.exceptions.ResourceAlreadyExistsException:
                pass
            client.create_log_stream(logGroupName=group, logStreamName=stream)
        self._streams.add((group, stream))

    def ship(
        self,
        local_path: pathlib.Path,
        group: str,
        stream: str,
        offset: int,
        *,
        final: bool,
        now: dt.datetime,
        session: SessionEventHeader | None = None,
    ) -> int:
        """Send the next batch of lines after ``offset``; returns the new offset (== offset: nothing to
        send). ``now`` stands for the time of lines whose writing time was not recorded. With a
        ``session`` header the lines go as AWS's JSON session events, else one event a line."""
        try:
            with local_path.open("rb") as file:
                file.seek(offset)
                data = file.read(READ_CHUNK)
        except OSError as exc:
            raise SinkError(f"cannot read {local_path}: {exc}") from exc
        # A partial last line is only the end of the file if the read reached the end.
        # JSON session events escape their lines: take half a batch of lines for them.
        budget = MAX_BATCH_BYTES if session is None else MAX_BATCH_BYTES // 2
        batch = next_batch(data, offset, final=final and len(data) < READ_CHUNK, max_bytes=budget)
        if not batch.messages:
            return batch.end_offset
        # The times the lines were written (kept beside the transcript), not the time of shipping.
        stamps = line_times.timestamps(
            line_times.times_path(local_path), batch.line_ends, int(now.timestamp() * 1000)
        )
        if session is not None:
            events = session_events(session, batch.messages, stamps)
        else:
            events = [
                {"timestamp": ms, "message": message}
                for ms, message in zip(stamps, batch.messages, strict=True)
            ]
        try:
            self._ensure_stream(group, stream)
            self.client().put_log_events(logGroupName=group, logStreamName=stream, logEvents=events)
        except (BotoCoreError, ClientError) as exc:
            self._streams.discard((group, stream))
            raise SinkError(f"CloudWatch Logs {group}/{stream}: {_describe(exc)}") from exc
        return batch.end_offset
