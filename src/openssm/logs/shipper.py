"""Ships session records and Run Command output from the local data directory to S3 / CloudWatch Logs,
durably.

The queue is the ``log_uploads`` table, so an upload survives a sink outage and a server restart:
each row is tried when due; a failure doubles its delay (up to a maximum); CloudWatch progress is the
byte offset in the local transcript already sent, saved after every batch, so a retry neither loses
nor repeats lines. A streaming row (a running session with ``cloudWatchStreamingEnabled``) is shipped
on every pass and completes after the session ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import pathlib
from typing import Any

from openssm.logs.sinks import (
    CloudWatchSink,
    S3Sink,
    SessionEventHeader,
    SinkError,
    SinkSettings,
    cloudwatch_url,
)
from openssm.services import Services
from openssm.store import log_uploads as store
from openssm.store import sessions
from openssm.store.log_uploads import LogUploadRow

log = logging.getLogger(__name__)


def retry_delay(attempts: int, base: float, maximum: float) -> float:
    """Exponential backoff: base, 2·base, 4·base … capped at ``maximum``."""
    return float(min(base * (2 ** min(attempts, 30)), maximum))


class LogShipper:
    def __init__(
        self,
        services: Services,
        *,
        s3: S3Sink | None = None,
        cloudwatch: CloudWatchSink | None = None,
    ) -> None:
        self.services = services
        config = services.config
        settings = SinkSettings.from_config(config)
        self.s3 = s3 or S3Sink(settings)
        self.cloudwatch = cloudwatch or CloudWatchSink(settings)
        self.node_id = config.node_id
        self.clock = services.clock
        self.interval = max(min(config.cloudwatch_stream_interval, 5.0), 0.05)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def engine(self) -> Any:
        return self.services.engine

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="log-shipper")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def wake(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        # Sessions do not survive a restart of their node: whatever was streaming is now final.
        await self._finish_orphaned_streams()
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("log shipper pass failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            self._wake.clear()

    async def _finish_orphaned_streams(self) -> None:
        for row in await store.due(self.engine, self.node_id, now=None, limit=10_000):
            if row.status == store.STREAMING:
                await store.finish_streaming(self.engine, row.session_id, now=self.clock.now())

    async def run_once(self) -> int:
        """One pass over what is due on this node; returns how many uploads completed."""
        completed = 0
        for row in await store.due(self.engine, self.node_id, now=self.clock.now()):
            if await self._ship(row):
                completed += 1
        return completed

    async def _ship(self, row: LogUploadRow) -> bool:
        path = pathlib.Path(row.local_path)
        try:
            if row.sink == "s3":
                await asyncio.to_thread(self.s3.upload, path, row.destination, encryption=row.encryption)
                # The transcript's URL is the session's S3 output; the recording and events are not.
                url = row.destination if path.suffix == ".log" and row.of_session else None
                await store.complete(self.engine, row, output_url=url, now=self.clock.now())
                log.info("%s: %s uploaded to %s", row.session_id, path.name, row.destination)
                return True
            if row.sink == "cloudwatch":
                return await self._ship_cloudwatch(row, path)
            log.error("unknown log sink %r in upload %s", row.sink, row.id)
            return False
        except SinkError as exc:
            config = self.services.config
            delay = retry_delay(
                row.attempts, config.log_upload_retry_seconds, config.log_upload_retry_max_seconds
            )
            log.warning("%s: %s (retrying in %.1fs)", row.session_id, exc, delay)
            retry_at = self.clock.now() + dt.timedelta(seconds=delay)
            await store.record_failure(self.engine, row.id, str(exc), retry_at=retry_at)
            return False

    async def _session_header(self, row: LogUploadRow) -> SessionEventHeader | None:
        """The fields of AWS's JSON session events, for a row that ships them."""
        if row.event_format != store.SESSION_JSON:
            return None
        session = await sessions.get(self.engine, row.session_id)
        return SessionEventHeader(
            region=self.services.config.region,
            target=session.target if session else "",
            owner_arn=session.owner_arn if session else "",
            run_as_user=(session.run_as_user or "") if session else "",
            session_id=row.session_id,
        )

    async def _ship_cloudwatch(self, row: LogUploadRow, path: pathlib.Path) -> bool:
        final = row.status == store.PENDING
        group, stream = row.destination, row.stream
        header = await self._session_header(row)
        offset = row.shipped_bytes
        while True:
            shipped = await asyncio.to_thread(
                self.cloudwatch.ship,
                path,
                group,
                stream,
                offset,
                final=final,
                now=self.clock.now(),
                session=header,
            )
            if shipped == offset:
                break
            offset = shipped
            await store.record_progress(self.engine, row.id, offset)
        if not final:
            return False
        config = self.services.config
        url = cloudwatch_url(config.sink_region or config.region, config.account_id, group, stream)
        await store.complete(
            self.engine, row, output_url=url if row.of_session else None, now=self.clock.now()
        )
        log.info("%s: %s complete in CloudWatch Logs %s", row.session_id, path.name, group)
        return True
