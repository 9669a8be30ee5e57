"""The log shipping queue (``log_uploads``): one row per file and sink. Records are written locally
first; a row is what still has to reach S3 / CloudWatch Logs, retried when due until it is done.

Rows belong to a session (``session_id`` is its id) or to a Run Command invocation's output
(``session_id`` is ``<CommandId>/<InstanceId>``, which no session id can be)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Final, Literal, TypedDict, Unpack

import sqlalchemy as sa

from openssm.store import outbox, sessions
from openssm.store.outbox import failed_attempt
from openssm.store.rows import Db, count, every, execute, writing
from openssm.store.tables import log_uploads

STREAMING: Final = "streaming"  # CloudWatch while the session runs: ship lines as they come
PENDING: Final = "pending"  # ship everything that is left, then done
DONE: Final = "done"

# How CloudWatch Logs gets a file's lines.
TEXT: Final = "text"  # one event a line
SESSION_JSON: Final = "session-json"  # AWS's JSON events of a streamed session (sessionData: the lines)

Sink = Literal["s3", "cloudwatch"]


@dataclasses.dataclass(frozen=True, slots=True)
class LogUploadRow:
    id: int
    session_id: str
    node_id: str  # the node holding the local files
    sink: str  # s3 | cloudwatch
    destination: str  # s3://bucket/key, or the log group name
    local_path: str
    encryption: str | None  # S3: "AES256", or "aws:kms" / "aws:kms:<key id>"
    status: str  # STREAMING | PENDING | DONE
    shipped_bytes: int  # how much of the local file CloudWatch already has
    attempts: int
    next_attempt_at: dt.datetime
    last_error: str | None
    created_at: dt.datetime
    completed_at: dt.datetime | None
    log_stream: str | None  # CloudWatch: the stream; None: the session id
    event_format: str  # TEXT | SESSION_JSON

    @property
    def stream(self) -> str:
        return self.log_stream or self.session_id

    @property
    def of_session(self) -> bool:
        """A session's record (whose URLs the session shows), not a command's output."""
        return "/" not in self.session_id


class NewUpload(TypedDict):
    session_id: str
    node_id: str
    sink: Sink
    destination: str
    local_path: str


async def add(
    db: Db,
    *,
    now: dt.datetime,
    status: str = PENDING,
    encryption: str | None = None,
    log_stream: str | None = None,
    event_format: str = TEXT,
    **upload: Unpack[NewUpload],
) -> None:
    """Queue one upload, due at once."""
    await outbox.enqueue(
        db,
        log_uploads,
        now=now,
        **upload,
        encryption=encryption,
        log_stream=log_stream,
        event_format=event_format,
        status=status,
        shipped_bytes=0,
    )


async def finish_streaming(db: Db, session_id: str, *, now: dt.datetime) -> None:
    """The session ended: its streaming uploads ship what is left and complete."""
    statement = (
        sa.update(log_uploads)
        .where(log_uploads.c.session_id == session_id, log_uploads.c.status == STREAMING)
        .values(status=PENDING, next_attempt_at=now)
    )
    await execute(db, statement)


async def due(db: Db, node_id: str, *, now: dt.datetime | None, limit: int = 50) -> list[LogUploadRow]:
    """This node's unfinished uploads that are due at ``now`` (None: every one), oldest first."""
    query = sa.select(log_uploads).where(
        log_uploads.c.node_id == node_id, log_uploads.c.status.in_((STREAMING, PENDING))
    )
    if now is not None:
        query = query.where(log_uploads.c.next_attempt_at <= now)
    return await every(db, query.order_by(log_uploads.c.id).limit(limit), LogUploadRow)


async def backlog(db: Db, node_id: str) -> int:
    """Uploads ``node_id`` has still to ship (streaming or pending, due or waiting for a retry)."""
    query = sa.select(log_uploads.c.id).where(
        log_uploads.c.node_id == node_id, log_uploads.c.status.in_((STREAMING, PENDING))
    )
    return await count(db, query)


async def for_session(db: Db, session_id: str) -> list[LogUploadRow]:
    query = sa.select(log_uploads).where(log_uploads.c.session_id == session_id)
    return await every(db, query.order_by(log_uploads.c.id), LogUploadRow)


async def all_uploads(db: Db) -> list[LogUploadRow]:
    return await every(db, sa.select(log_uploads).order_by(log_uploads.c.id), LogUploadRow)


def _upload(upload_id: int) -> sa.Update:
    return sa.update(log_uploads).where(log_uploads.c.id == upload_id)


async def record_progress(db: Db, upload_id: int, shipped_bytes: int) -> None:
    await execute(db, _upload(upload_id).values(shipped_bytes=shipped_bytes, attempts=0, last_error=None))


async def record_failure(db: Db, upload_id: int, error: str, *, retry_at: dt.datetime) -> None:
    statement = _upload(upload_id).values(**failed_attempt(log_uploads, error), next_attempt_at=retry_at)
    await execute(db, statement)


async def complete(db: Db, upload: LogUploadRow, *, output_url: str | None, now: dt.datetime) -> None:
    """Mark one upload done and, when it is the session's S3 log or CloudWatch stream (an
    ``output_url`` is given), say where that log now is."""
    async with writing(db) as conn:
        await execute(conn, _upload(upload.id).values(status=DONE, completed_at=now, last_error=None))
        if output_url is not None and upload.sink in ("s3", "cloudwatch"):
            sink: Sink = "s3" if upload.sink == "s3" else "cloudwatch"
            await sessions.set_output_url(conn, upload.session_id, sink, output_url)
