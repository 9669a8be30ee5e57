"""The server-side session recorder: a gateway tap writing each session's record as it runs.

Files under ``<data_dir>/sessions/`` (the local sink, always written first):
- shell-type sessions: ``<SessionId>.cast`` (asciicast v2: output, resizes, input if enabled) and
  ``<SessionId>.log`` (plain-text transcript);
- port / SSH sessions: ``<SessionId>.log`` (one readable line per connection event) and
  ``<SessionId>.jsonl`` connection records;
- every session: ``<SessionId>.jsonl`` starts with who/what/where and ends with how it ended.
Each event is flushed to the OS as it happens (a crash of the server loses nothing written) and
the files are fsynced at the end. Then the uploads the preferences ask for are queued.

A session goes on across a restart of the server (``gateway/tap.py``, ResumableTap): with every
flush ``<SessionId>.resume`` says up to which sequence number each direction is in the files (and
a port session's totals), so the recorder made after the restart appends to the same files and
leaves out what the peers resend but the record already holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import pathlib
import re
from collections.abc import Mapping
from typing import IO, Any

from openssm.gateway.tap import Payload
from openssm.logs import integrity, line_times, port_record
from openssm.logs.asciicast import AsciicastWriter
from openssm.logs.shipper import LogShipper
from openssm.logs.sinks import s3_encryption, s3_url
from openssm.logs.transcript import TranscriptBuilder
from openssm.protocol.documents import DocumentError, Preferences, preferences_from_document
from openssm.protocol.messages import usable_size
from openssm.services import Services
from openssm.store import log_uploads as store
from openssm.store import sessions
from openssm.store.log_uploads import Sink

log = logging.getLogger(__name__)

OUTPUT, STDERR, SIZE, EXIT_CODE = 1, 11, 3, 12
# Written events reach the OS within this many seconds (one flush per burst, not per frame), so a
# server crash loses at most this much and the CloudWatch streamer sees lines promptly.
FLUSH_DELAY = 0.1
_UNSAFE = re.compile(r"[^A-Za-z0-9._@+=,\-]")
RESUME_STATE_BYTES = 512  # the .resume file is rewritten in place at this fixed size


def sessions_dir(data_dir: pathlib.Path) -> pathlib.Path:
    return data_dir / "sessions"


def file_stem(session_id: str) -> str:
    """Session ids hold IAM user names (letters, digits, ``+=,.@_-``); anything else is replaced."""
    return _UNSAFE.sub("_", session_id)[:200] or "session"


def session_preferences(session: Mapping[str, Any]) -> Preferences:
    """The preferences StartSession put into the session's document ``inputs``."""
    try:
        return preferences_from_document(session.get("document_content") or {})
    except DocumentError as exc:
        log.warning(
            "session %s: unusable preferences (%s); recording locally only", session.get("session_id"), exc
        )
        return Preferences()


def _json_default(value: object) -> str:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return str(value)


def read_resume_state(path: pathlib.Path) -> dict[str, Any] | None:
    """What a recorder before a restart left in ``<SessionId>.resume``; None if there is none."""
    try:
        with path.open("rb") as file:
            state = json.loads(file.read(RESUME_STATE_BYTES) or b"null")
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("unreadable %s (%s): recording the session as new", path, exc)
        return None
    return state if isinstance(state, dict) else None


class SessionRecorder:
    """One session's :class:`openssm.gateway.tap.SessionTap`."""

    def __init__(self, services: Services, shipper: LogShipper | None, session: Mapping[str, Any]) -> None:
        self.services = services
        self.shipper = shipper
        self.session_id: str = str(session["session_id"])
        self.is_port = session.get("session_type") == "Port"
        self.preferences = session_preferences(session)
        self.directory = sessions_dir(services.config.data_dir)
        stem = file_stem(self.session_id)
        self.cast_path = self.directory / f"{stem}.cast"
        self.log_path = self.directory / f"{stem}.log"
        self.events_path = self.directory / f"{stem}.jsonl"
        self.resume_path = self.directory / f"{stem}.resume"
        self._resume = read_resume_state(self.resume_path)  # None: a new session
        self._next: dict[str, int] = (
            {kind: int(self._resume.get(kind, 0)) for kind in ("output", "input")} if self._resume else {}
        )
        self._resume_fd: int | None = None
        self._files: list[IO[str]] = []
        self._dirty: set[IO[str]] = set()  # written since the last flush
        self._times: IO[str] | None = None
        self._log_bytes = 0  # size of the transcript so far
        self._timed_bytes = 0  # … of which line_times has a record
        self._flush_timer: asyncio.TimerHandle | None = None
        self._cast: IO[str] | None = None
        self._log: IO[str] | None = None
        self._events: IO[str] | None = None
        self._writer = AsciicastWriter(
            timestamp=int(self._now().timestamp()),
            title=f"{self.session_id} on {session.get('target', '')}",
            record_input=services.config.record_input,
        )
        self._transcript = TranscriptBuilder()
        self._port = port_record.PortRecorder(
            port_record.destination_of(session), mux_possible=port_record.is_local_port_forwarding(session)
        )
        self._broken = False
        if self._resume is not None:
            self._restore_port_totals(self._resume)

    def _now(self) -> dt.datetime:
        return self.services.clock.now()

    # -- ResumableTap ------------------------------------------------------------------------------

    def recorded_until(self) -> dict[str, int]:
        return dict(self._next)

    def note_sequence(self, kind: str, sequence: int) -> None:
        self._next[kind] = sequence + 1

    async def on_suspend(self, t: float) -> None:
        self._event({"t": round(t, 6), "event": "gateway_stopping", "time": self._now().isoformat()})
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        self._flush()
        await asyncio.to_thread(self._close_durably)

    def flush(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
        self._flush()

    def _restore_port_totals(self, state: Mapping[str, Any]) -> None:
        port = state.get("port")
        if not isinstance(port, dict):
            return
        recorder = self._port
        # A mux stream cannot be read from the middle: the record counts bytes from here on.
        recorder.mode = "basic" if port.get("mode") else None
        for name in ("connections", "failed", "bytes_to_destination", "bytes_from_destination"):
            value = port.get(name)
            if isinstance(value, int):
                setattr(recorder, name, value)

    def _save_resume_state(self) -> None:
        """Where the files stand, written after their flush (so never ahead of them)."""
        if self._resume_fd is None:
            return
        port = self._port
        state = {
            **self._next,
            "port": {
                "mode": port.mode,
                "connections": port.connections,
                "failed": port.failed,
                "bytes_to_destination": port.bytes_to_destination,
                "bytes_from_destination": port.bytes_from_destination,
            },
        }
        text = json.dumps(state).encode().ljust(RESUME_STATE_BYTES)[:RESUME_STATE_BYTES]
        try:
            os.pwrite(self._resume_fd, text, 0)
        except OSError as exc:
            log.error("session %s: cannot write %s: %s", self.session_id, self.resume_path, exc)

    # -- SessionTap --------------------------------------------------------------------------------

    async def on_start(self, session: Mapping[str, Any]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._events = self._open(self.events_path)
        self._log = self._open(self.log_path)
        self._times = self._open(line_times.times_path(self.log_path))
        if not self.is_port:
            self._cast = self._open(self.cast_path)
            self._writer.header_written = self._resume is not None and self.cast_path.stat().st_size > 0
        self._resume_fd = os.open(self.resume_path, os.O_WRONLY | os.O_CREAT, 0o600)
        if self._resume is not None:
            self._event({"t": 0.0, "event": "session_resumed", "time": self._now().isoformat()})
            self._flush()
            return  # the rest was done when it started
        self._event(
            {
                "t": 0.0,
                "event": "session_started",
                "time": self._now().isoformat(),
                "session_id": self.session_id,
                "target": session.get("target"),
                "owner": session.get("owner_arn"),
                "document": session.get("document_name"),
                "session_type": session.get("session_type"),
                "run_as": session.get("run_as_user"),
                "parameters": session.get("parameters") or {},
            }
        )
        if self.is_port:
            self._log_line(
                f"Port session {self.session_id} on {session.get('target')} by {session.get('owner_arn')} "
                f"to {self._port.destination}"
            )
        self._flush()
        main = self.events_path if self.is_port else self.cast_path
        await sessions.set_recording_path(self.services.engine, self.session_id, str(main))
        prefs = self.preferences
        if prefs.cloudwatch_log_group_name and prefs.cloudwatch_streaming_enabled:
            # Streamed as AWS's agent streams: JSON events with the session's who/where.
            await self._queue(
                "cloudwatch",
                prefs.cloudwatch_log_group_name,
                self.log_path,
                store.STREAMING,
                event_format=store.SESSION_JSON,
            )

    # Payloads are views into the relayed frames: port records read them as they are, the shell
    # recordings decode text and take bytes.

    async def on_output(self, payload: Payload, payload_type: int, t: float) -> None:
        if self._broken:
            return
        if self.is_port:
            self._port_events(self._port.output(payload_type, payload, t))
        elif payload_type in (OUTPUT, STDERR):
            data = bytes(payload)
            self._write_cast(self._writer.output(data, t))
            self._log_lines(self._transcript.feed(data))
        elif payload_type == EXIT_CODE:
            text = bytes(payload[:64]).decode("ascii", "replace")
            self._event({"t": round(t, 6), "event": "exit_code", "text": text})
        self._schedule_flush()

    async def on_input(self, payload: Payload, payload_type: int, t: float) -> None:
        if self._broken:
            return
        if self.is_port:
            self._port_events(self._port.input(payload_type, payload, t))
        elif payload_type == SIZE:
            size = usable_size(payload)
            if size is not None:
                self._write_cast(self._writer.resize(size.cols, size.rows, t))
        elif payload_type == OUTPUT:
            self._write_cast(self._writer.input(bytes(payload), t))
        self._schedule_flush()

    async def on_end(self, status: str, reason: str, t: float) -> None:
        if self.is_port:
            self._port_events(self._port.finish(t))
        else:
            self._write_cast(self._writer.finish(t))
            self._log_lines(self._transcript.finish())
        self._event(
            {
                "t": round(t, 6),
                "event": "session_ended",
                "time": self._now().isoformat(),
                "status": status,
                "reason": reason,
            }
        )
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        await asyncio.to_thread(self._close_durably)
        with contextlib.suppress(OSError):
            self.resume_path.unlink()  # the session is over: nothing to pick up again
        recorded = [self.events_path, self.log_path, line_times.times_path(self.log_path)]
        if not self.is_port:
            recorded.append(self.cast_path)
        await integrity.seal_recording(self.services, self.session_id, recorded)  # tamper-evident
        await self._queue_final_uploads()

    # -- files -------------------------------------------------------------------------------------

    def _open(self, path: pathlib.Path) -> IO[str]:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        file = os.fdopen(descriptor, "a", encoding="utf-8", newline="\n")
        self._files.append(file)
        return file

    def _write(self, file: IO[str] | None, text: str) -> None:
        if file is None or not text or self._broken:
            return
        try:
            file.write(text)
            self._dirty.add(file)
        except OSError as exc:
            self._broken = True
            log.error("session %s: recording stopped, cannot write %s: %s", self.session_id, file.name, exc)

    def _write_cast(self, text: str) -> None:
        self._write(self._cast, text)

    def _log_text(self, text: str) -> None:
        self._write(self._log, text)
        self._log_bytes += len(text) if text.isascii() else len(text.encode("utf-8"))

    def _log_line(self, line: str) -> None:
        self._log_text(line + "\n")

    def _log_lines(self, lines: list[str]) -> None:
        if lines:
            self._log_text("\n".join(lines) + "\n")

    def _note_line_times(self) -> None:
        if self._log_bytes != self._timed_bytes:
            self._timed_bytes = self._log_bytes
            self._write(self._times, line_times.record(self._log_bytes, int(self._now().timestamp() * 1000)))

    def _event(self, event: Mapping[str, Any]) -> None:
        self._write(self._events, json.dumps(event, default=_json_default, ensure_ascii=False) + "\n")

    def _port_events(self, events: list[port_record.Event]) -> None:
        for event in events:
            self._event(event)
            self._log_line(port_record.describe(event))

    def _schedule_flush(self) -> None:
        if self._dirty and self._flush_timer is None:
            self._flush_timer = asyncio.get_running_loop().call_later(FLUSH_DELAY, self._flush)

    def _flush(self) -> None:
        self._flush_timer = None
        self._note_line_times()
        try:
            while self._dirty:
                self._dirty.pop().flush()
        except OSError as exc:
            self._broken = True
            log.error("session %s: recording stopped: %s", self.session_id, exc)
            return
        self._save_resume_state()

    def _close_durably(self) -> None:
        self._note_line_times()
        self._dirty.clear()
        for file in self._files:
            try:
                file.flush()
                os.fsync(file.fileno())
            except OSError as exc:
                log.error("session %s: could not sync %s: %s", self.session_id, file.name, exc)
            finally:
                file.close()
        self._files.clear()
        if self._resume_fd is not None:
            self._save_resume_state()
            with contextlib.suppress(OSError):
                os.fsync(self._resume_fd)
            os.close(self._resume_fd)
            self._resume_fd = None

    # -- uploads -----------------------------------------------------------------------------------

    async def _queue(
        self,
        sink: Sink,
        destination: str,
        path: pathlib.Path,
        status: str = store.PENDING,
        encryption: str | None = None,
        event_format: str = store.TEXT,
    ) -> None:
        await store.add(
            self.services.engine,
            session_id=self.session_id,
            node_id=self.services.config.node_id,
            sink=sink,
            destination=destination,
            local_path=str(path),
            now=self.services.clock.now(),
            status=status,
            encryption=encryption,
            event_format=event_format,
        )

    async def _queue_final_uploads(self) -> None:
        prefs = self.preferences
        engine = self.services.engine
        if prefs.s3_bucket_name:
            # The transcript first (its URL is the session's S3OutputUrl), then the recording and events.
            paths = (
                (self.log_path, self.events_path)
                if self.is_port
                else (self.log_path, self.cast_path, self.events_path)
            )
            for path in paths:
                url = s3_url(prefs.s3_bucket_name, prefs.s3_key_prefix, path.name)
                encryption = s3_encryption(prefs.s3_encryption_enabled, prefs.kms_key_id)
                await self._queue("s3", url, path, encryption=encryption)
        if prefs.cloudwatch_log_group_name:
            if prefs.cloudwatch_streaming_enabled:
                await store.finish_streaming(engine, self.session_id, now=self.services.clock.now())
            else:
                await self._queue("cloudwatch", prefs.cloudwatch_log_group_name, self.log_path)
        if self.shipper is not None:
            self.shipper.wake()
