"""``openssm logs``: print or replay a session's server-side recording from the data directory."""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import sys
import time
from typing import IO, TYPE_CHECKING

import click

from openssm.click_options import server_data_dir_option
from openssm.logs.asciicast import read_cast
from openssm.logs.recorder import file_stem, sessions_dir

if TYPE_CHECKING:
    from openssm.store.log_uploads import LogUploadRow

MAX_RECORDING_BYTES = 1024 * 1024 * 1024  # refuse to load more than this into memory


def _default_data_dir() -> pathlib.Path:
    configured = os.environ.get("OPENSSM_DATA_DIR")
    if configured:
        return pathlib.Path(configured)
    return pathlib.Path.home() / ".local" / "share" / "openssm"


def _read(path: pathlib.Path) -> str:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise click.ClickException(f"no recording at {path}") from None
    if size > MAX_RECORDING_BYTES:
        raise click.ClickException(f"{path} is larger than {MAX_RECORDING_BYTES} bytes")
    return path.read_text(encoding="utf-8", errors="replace")


def replay(text: str, out: IO[str], *, speed: float, idle_limit: float | None) -> None:
    """Write the output events with their timing (``speed`` times faster; pauses capped)."""
    try:
        _, events = read_cast(text)
    except ValueError as exc:
        raise click.ClickException(f"not a readable recording: {exc}") from None
    previous = 0.0
    for at, code, data in events:
        pause = max(at - previous, 0.0)
        previous = at
        if idle_limit is not None:
            pause = min(pause, idle_limit)
        if pause > 0 and speed > 0:
            time.sleep(pause / speed)
        if code == "o":
            out.write(data)
            out.flush()


async def _uploads(database_url: str) -> dict[str, list[LogUploadRow]]:
    from openssm.store import log_uploads
    from openssm.store.db import make_engine

    engine = make_engine(database_url)
    try:
        rows = await log_uploads.all_uploads(engine)
    finally:
        await engine.dispose()
    by_session: dict[str, list[LogUploadRow]] = {}
    for row in rows:
        by_session.setdefault(row.session_id, []).append(row)
    return by_session


def _describe_upload(row: LogUploadRow) -> str:
    where = row.destination if row.sink == "s3" else f"CloudWatch Logs {row.destination}"
    state = row.status
    if row.status != "done" and row.attempts:
        state += f", {row.attempts} failed attempts, last: {row.last_error}"
    return f"    -> {where} ({state})"


def list_sessions(
    directory: pathlib.Path, out: IO[str], uploads: dict[str, list[LogUploadRow]] | None = None
) -> None:
    """One line per recorded session (id, start, target, how it ended, local files), then where its
    records were shipped and whether that is done."""
    for events in sorted(directory.glob("*.jsonl"), key=lambda p: p.stat().st_mtime):
        started, ended = {}, {}
        for line in _read(events).splitlines():
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if item.get("event") == "session_started":
                started = item
            elif item.get("event") == "session_ended":
                ended = item
        files = ", ".join(
            p.suffix[1:] for p in sorted(directory.glob(f"{events.stem}.*")) if p.suffix != ".times"
        )
        status = ended.get("status", "running")
        session_id = str(started.get("session_id", events.stem))
        out.write(
            f"{session_id}  {started.get('time', '?')}  {started.get('target', '?')}  {status}  [{files}]\n"
        )
        for row in (uploads or {}).get(session_id, []):
            out.write(_describe_upload(row) + "\n")


@click.command("logs")
@click.argument("session_id", required=False)
@server_data_dir_option
@click.option("--replay", "mode", flag_value="replay", help="Replay the terminal recording with its timing.")
@click.option(
    "--print", "mode", flag_value="print", default=True, help="Print the plain-text transcript (default)."
)
@click.option("--cast", "mode", flag_value="cast", help="Write the asciicast v2 file (for asciinema play).")
@click.option(
    "--events", "mode", flag_value="events", help="Write the JSON-lines record (connections, start, end)."
)
@click.option(
    "--database-url",
    default=None,
    help="The server's database, to show where records were shipped (default: SQLite in the data dir).",
)
@click.option("--speed", type=float, default=1.0, show_default=True, help="Replay this many times faster.")
@click.option(
    "--idle-limit",
    type=float,
    default=None,
    help="Replay: cap every pause at this many seconds.",
)
def logs_command(
    session_id: str | None,
    data_dir: pathlib.Path | None,
    mode: str,
    database_url: str | None,
    speed: float,
    idle_limit: float | None,
) -> None:
    """Print or replay a session's recording, made by the server from the relayed data.

    Without SESSION_ID, lists the recorded sessions. Shell sessions have a transcript and a
    terminal recording (asciicast v2); port and SSH sessions a record of connections and bytes.
    """
    if speed <= 0:
        raise click.BadParameter("must be greater than 0", param_hint="--speed")
    directory = sessions_dir((data_dir or _default_data_dir()).expanduser())
    if session_id is None:
        if not directory.is_dir():
            raise click.ClickException(f"no recordings in {directory}")
        base = (data_dir or _default_data_dir()).expanduser()
        url = database_url or (
            f"sqlite+aiosqlite:///{base / 'openssm.db'}" if (base / "openssm.db").exists() else None
        )
        list_sessions(directory, sys.stdout, asyncio.run(_uploads(url)) if url else None)
        return
    stem = file_stem(session_id)  # user names may hold dots: never Path.with_suffix
    if mode == "replay":
        cast = directory / f"{stem}.cast"
        if not cast.exists():
            raise click.ClickException(
                f"{session_id} has no terminal recording (port sessions have --print/--events)"
            )
        replay(_read(cast), sys.stdout, speed=speed, idle_limit=idle_limit)
        return
    suffix = {"print": ".log", "cast": ".cast", "events": ".jsonl"}[mode]
    sys.stdout.write(_read(directory / f"{stem}{suffix}"))
    sys.stdout.flush()
