"""``openssm admin backup`` while the server runs and writes, and ``openssm admin restore``: refused
while a server runs, refused with another master key, and the restored server has the backup's state."""

from __future__ import annotations

import contextlib
import pathlib
import sqlite3
import subprocess
import sys
import threading
import uuid

import pytest
from click.testing import CliRunner
from tests.integration.api_harness import ApiServer

from openssm.cli import main
from openssm.store.db import database_url_for


def embedded(data_dir: pathlib.Path) -> ApiServer:
    """A server on the embedded SQLite database (what backup and restore are for), also when the
    suite runs its API tests again on PostgreSQL."""
    return ApiServer(data_dir, database_url=database_url_for(data_dir))


def admin(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["admin", *args], catch_exceptions=False)
    return result.exit_code, result.output


def user_names(server: ApiServer) -> set[str]:
    iam = server.client("iam")
    return {user["UserName"] for user in iam.list_users(MaxItems=1000)["Users"]}


def test_backup_while_running_then_restore(tmp_path: pathlib.Path) -> None:
    data_dir = tmp_path / "data"
    server = embedded(data_dir).start()
    stop_writing = threading.Event()
    written: list[str] = []

    def keep_writing() -> None:  # the server writes all through the backup
        iam = server.client("iam")
        while not stop_writing.is_set():
            name = f"during-{uuid.uuid4().hex[:8]}"
            iam.create_user(UserName=name)
            written.append(name)

    try:
        server.client("iam").create_user(UserName="before-backup")
        writer = threading.Thread(target=keep_writing)
        writer.start()
        try:
            code, output = admin("backup", str(tmp_path / "backup.db"), "--data-dir", str(data_dir))
        finally:
            stop_writing.set()
            writer.join()
        assert code == 0, output
        assert "keep the master key" in output
        assert written, "the server wrote nothing during the backup"
        assert oct((tmp_path / "backup.db").stat().st_mode & 0o777) == "0o600"
        with contextlib.closing(sqlite3.connect(tmp_path / "backup.db")) as copy:
            assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            in_backup = {row[0] for row in copy.execute("SELECT name FROM iam_users")}
        assert "before-backup" in in_backup
        assert in_backup - {"admin", "before-backup"} <= set(written)  # a snapshot of real writes

        code, output = admin("backup", str(tmp_path / "backup.db"), "--data-dir", str(data_dir))
        assert code == 1 and "exists (--force overwrites it)" in output

        server.client("iam").create_user(UserName="after-backup")
        code, output = admin("restore", str(tmp_path / "backup.db"), "--data-dir", str(data_dir))
        assert code == 1
        assert f"is running on {data_dir}" in output and "stop it before restoring" in output
    finally:
        server.stop()

    code, output = admin("restore", str(tmp_path / "backup.db"), "--data-dir", str(data_dir))
    assert code == 0, output
    assert "kept the previous database as" in output
    assert len(list(data_dir.glob("openssm.db.before-restore-*"))) == 1

    restarted = embedded(data_dir).start()
    try:
        names = user_names(restarted)
        assert "before-backup" in names and "after-backup" not in names
        assert names - {"admin", "before-backup"} == in_backup - {"admin", "before-backup"}
    finally:
        restarted.stop()


def test_restore_refuses_a_backup_made_with_another_master_key(tmp_path: pathlib.Path) -> None:
    server = embedded(tmp_path / "one").start()
    server.stop()
    code, output = admin("backup", str(tmp_path / "one.db"), "--data-dir", str(tmp_path / "one"))
    assert code == 0, output
    other = embedded(tmp_path / "two").start()  # a data directory with a master key of its own
    other.stop()
    code, output = admin("restore", str(tmp_path / "one.db"), "--data-dir", str(tmp_path / "two"))
    assert code == 1 and "is not the one" in output and "master key" in output


def test_restore_refuses_what_is_not_an_openssm_database(tmp_path: pathlib.Path) -> None:
    (tmp_path / "notes.db").write_bytes(b"not a database at all" * 100)
    code, output = admin("restore", str(tmp_path / "notes.db"), "--data-dir", str(tmp_path / "data"))
    assert code == 1 and "is not an SQLite database" in output
    with contextlib.closing(sqlite3.connect(tmp_path / "empty.db")) as empty:
        empty.execute("CREATE TABLE t (x)")
    code, output = admin("restore", str(tmp_path / "empty.db"), "--data-dir", str(tmp_path / "data"))
    assert code == 1 and "not an OpenSSM database" in output


@pytest.mark.parametrize("command", ["backup", "restore"])
def test_postgresql_is_refused_with_a_pointer_to_pg_dump(tmp_path: pathlib.Path, command: str) -> None:
    (tmp_path / "file.db").write_bytes(b"")
    url = "postgresql+asyncpg://openssm@db.internal:5432/openssm"
    extra = ["--force"] if command == "backup" else ["--data-dir", str(tmp_path)]
    code, output = admin(command, str(tmp_path / "file.db"), "--database-url", url, *extra)
    assert code == 1
    assert "pg_dump" in output and "pg_restore" in output


def test_restore_keeps_a_crashed_servers_write_ahead_log_with_its_database(tmp_path: pathlib.Path) -> None:
    """The database is in write-ahead-log mode: a server killed mid-run leaves its last commits in
    ``openssm.db-wal``. A restore moves that log aside with the database it belongs to; left in
    place, SQLite would replay it into the restored file."""
    data_dir = tmp_path / "data"
    server = embedded(data_dir).start()
    server.stop()
    code, output = admin("backup", str(tmp_path / "backup.db"), "--data-dir", str(data_dir))
    assert code == 0, output
    # A writer that dies without checkpointing or closing: its commit lives only in the log.
    crash = (
        "import os, sqlite3, sys\n"
        "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "assert db.execute('PRAGMA journal_mode').fetchone() == ('wal',)\n"
        "db.execute('PRAGMA wal_autocheckpoint=0')\n"
        "db.execute('CREATE TABLE crashed_write (x)')\n"
        "os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", crash, str(data_dir / "openssm.db")], check=True)
    assert (data_dir / "openssm.db-wal").stat().st_size > 0

    code, output = admin("restore", str(tmp_path / "backup.db"), "--data-dir", str(data_dir))
    assert code == 0, output
    assert not (data_dir / "openssm.db-wal").exists()
    [kept] = data_dir.glob("openssm.db.before-restore-*[0-9Z]")
    with contextlib.closing(sqlite3.connect(kept)) as old:
        assert old.execute("SELECT name FROM sqlite_master WHERE name = 'crashed_write'").fetchone()
    with contextlib.closing(sqlite3.connect(data_dir / "openssm.db")) as restored:
        assert restored.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert not restored.execute("SELECT name FROM sqlite_master WHERE name = 'crashed_write'").fetchone()
