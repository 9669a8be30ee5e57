"""``openssm admin backup FILE`` and ``openssm admin restore FILE``: the embedded SQLite database.

Backup uses SQLite's online backup API (``sqlite3.Connection.backup``): it copies a consistent
snapshot while the server keeps running and writing. Restore refuses while a server runs on the
data directory (it holds ``DATA_DIR/server.lock``), checks that the file is an OpenSSM database
this version can run (its schema revision is one of ours) and that the master key in use opens
its secrets, keeps the database it replaces beside it, and puts the backup in place.

The secrets in the database (access-key secrets) are encrypted with the master key
(``DATA_DIR/master.key`` or ``OPENSSM_MASTER_KEY``), which is not in the backup: keep a copy of
the key, apart from the backups. With PostgreSQL (``--database-url postgresql…``) both commands
refuse and point at ``pg_dump``/``pg_restore``, which do this job for PostgreSQL.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import pathlib
import sqlite3
from typing import Final

import click
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url

from openssm.click_options import file_option, option_group, server_data_dir_option
from openssm.server.bootstrap import MASTER_KEY_CHECK, master_key_matches
from openssm.server.cli import default_data_dir, server_command
from openssm.server.config_file import default_map
from openssm.server.datadir import DataDirBusy, DataDirLock
from openssm.store.db import MIGRATIONS_DIR, database_url_for
from openssm.store.secrets import MASTER_KEY_ENV, MASTER_KEY_FILE, SecretCipher, SecretCipherError

# What SQLite keeps beside a database in write-ahead-log mode (``store.db``).
SQLITE_SIDE_FILES: Final = ("-wal", "-shm")
POSTGRES_HELP: Final = (
    "this server's database is PostgreSQL: back it up with pg_dump and restore it with pg_restore, "
    "e.g. `pg_dump --format=custom --file openssm.dump DBNAME` and "
    "`pg_restore --clean --if-exists --dbname DBNAME openssm.dump` with the servers stopped. "
    "Keep OPENSSM_MASTER_KEY with it: the secrets in the database are encrypted with that key."
)


class Target:
    """Which database the command is about: from --config, --data-dir and --database-url."""

    def __init__(
        self, config: pathlib.Path | None, data_dir: pathlib.Path | None, database_url: str | None
    ) -> None:
        settings = default_map(server_command, config) if config else {}
        chosen_dir = data_dir or settings.get("data_dir")
        self.data_dir = (
            (pathlib.Path(chosen_dir) if chosen_dir else default_data_dir()).expanduser().resolve()
        )
        self.database_url = database_url or settings.get("database_url") or database_url_for(self.data_dir)

    def sqlite_path(self) -> pathlib.Path:
        url = make_url(self.database_url)
        if not url.drivername.startswith("sqlite"):
            raise click.ClickException(POSTGRES_HELP)
        if not url.database or url.database == ":memory:":
            raise click.ClickException(f"{self.database_url} is not a database file")
        return pathlib.Path(url.database)


# Which server's database an admin command works on.
target_options = option_group(
    file_option(
        "--config", help="The server's TOML file: its data-dir and database-url keys say which database."
    ),
    server_data_dir_option,
    click.option("--database-url", default=None, help="The server's --database-url, if it has one."),
)


def _copy(source: sqlite3.Connection, destination: pathlib.Path) -> None:
    """SQLite's online backup of ``source`` into a new file (0600), put in place atomically."""
    temporary = destination.with_name(f".{destination.name}.partial")
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # secrets, even encrypted
    os.close(fd)
    try:
        with contextlib.closing(sqlite3.connect(temporary)) as copy:
            source.backup(copy)  # one step: a consistent snapshot, even while the server writes
            if copy.execute("PRAGMA quick_check").fetchone() != ("ok",):
                raise click.ClickException("the copy does not pass SQLite's quick_check")
        os.replace(temporary, destination)
    finally:
        temporary.unlink(missing_ok=True)


def _revision(connection: sqlite3.Connection) -> str | None:
    try:
        row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.DatabaseError:
        return None
    return str(row[0]) if row else None


def _known_revisions() -> set[str]:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return {script.revision for script in ScriptDirectory.from_config(config).walk_revisions()}


@click.group("admin", short_help="Back up and restore the server's database.")
def admin_group() -> None:
    """Administer an OpenSSM server's data: back up and restore its embedded (SQLite) database."""


@admin_group.command("backup", short_help="Copy the database to FILE, while the server runs.")
@click.argument("file", type=click.Path(dir_okay=False, path_type=pathlib.Path))
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists.")
@target_options
def backup_command(
    file: pathlib.Path,
    force: bool,
    config: pathlib.Path | None,
    data_dir: pathlib.Path | None,
    database_url: str | None,
) -> None:
    """Copy the server's SQLite database to FILE with SQLite's online backup API: a consistent
    snapshot, taken while the server keeps running. FILE is created 0600.

    The master key (DATA_DIR/master.key, or OPENSSM_MASTER_KEY) is not in FILE: keep a copy of it
    apart from the backups; a restore needs it. For PostgreSQL use pg_dump."""
    target = Target(config, data_dir, database_url)
    database = target.sqlite_path()
    if not database.is_file():
        raise click.ClickException(f"there is no database at {database}")
    if file.exists() and not force:
        raise click.ClickException(f"{file} exists (--force overwrites it)")
    with contextlib.closing(sqlite3.connect(database, timeout=30)) as source:
        _copy(source, file)
    click.echo(f"backed up {database} to {file}")
    click.echo(
        f"keep the master key ({target.data_dir / MASTER_KEY_FILE}, or {MASTER_KEY_ENV}) too, apart "
        "from the backup: the secrets in the backup are encrypted with it"
    )


def _check_backup(file: pathlib.Path, data_dir: pathlib.Path) -> None:
    try:
        source = sqlite3.connect(f"file:{file}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise click.ClickException(f"{file} is not an SQLite database: {exc}") from exc
    with contextlib.closing(source):
        try:
            healthy = source.execute("PRAGMA quick_check").fetchone() == ("ok",)
        except sqlite3.DatabaseError as exc:
            raise click.ClickException(f"{file} is not an SQLite database: {exc}") from exc
        if not healthy:
            raise click.ClickException(f"{file} does not pass SQLite's quick_check")
        revision = _revision(source)
        if revision is None:
            raise click.ClickException(f"{file} is not an OpenSSM database (no schema revision)")
        if revision not in _known_revisions():
            raise click.ClickException(
                f"{file} has schema revision {revision}, which this OpenSSM does not know "
                "(made by a newer version?)"
            )
        row = source.execute("SELECT value FROM settings WHERE key = ?", (MASTER_KEY_CHECK,)).fetchone()
    if row is None:
        return  # never started: there are no secrets in it yet
    if not os.environ.get(MASTER_KEY_ENV) and not (data_dir / MASTER_KEY_FILE).is_file():
        raise click.ClickException(
            f"there is no master key in {data_dir / MASTER_KEY_FILE} (nor {MASTER_KEY_ENV}): put the "
            "key the backup's server used there first"
        )
    try:
        cipher = SecretCipher.for_data_dir(data_dir)
    except SecretCipherError as exc:
        raise click.ClickException(str(exc)) from exc
    if not master_key_matches(cipher, str(row[0])):
        raise click.ClickException(
            f"the master key in use ({MASTER_KEY_ENV} or {data_dir / MASTER_KEY_FILE}) is not the one "
            f"{file} was made with: its secrets would not open. Put that key in place first."
        )


@admin_group.command("restore", short_help="Replace the database with a backup (server stopped).")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=pathlib.Path))
@target_options
def restore_command(
    file: pathlib.Path, config: pathlib.Path | None, data_dir: pathlib.Path | None, database_url: str | None
) -> None:
    """Replace the server's SQLite database with FILE (made by `openssm admin backup`).

    Refuses while a server runs on the data directory: stop it first. The database it replaces is
    kept beside it (openssm.db.before-restore-<time>). The master key must be the one the backup's
    server used. For PostgreSQL use pg_restore."""
    target = Target(config, data_dir, database_url)
    database = target.sqlite_path()
    target.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        with DataDirLock(target.data_dir):
            _check_backup(file, target.data_dir)
            if database.exists():
                stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
                kept = database.with_name(f"{database.name}.before-restore-{stamp}")
                # With its write-ahead log (a server that did not stop cleanly leaves one): it
                # belongs to the database kept, and left in place SQLite would replay it into the
                # restored file.
                for suffix in ("", *SQLITE_SIDE_FILES):
                    side = database.with_name(database.name + suffix)
                    if side.exists():
                        os.replace(side, kept.with_name(kept.name + suffix))
                click.echo(f"kept the previous database as {kept}")
            with contextlib.closing(sqlite3.connect(f"file:{file}?mode=ro", uri=True)) as source:
                _copy(source, database)
    except DataDirBusy as exc:
        raise click.ClickException(
            f"{exc}: stop it before restoring (systemctl stop openssm-server, or Ctrl-C where it runs), "
            "then run this again"
        ) from exc
    click.echo(f"restored {file} into {database}; start the server")
