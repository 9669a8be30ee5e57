"""Engine creation and schema migrations (Alembic, run in-process at server start)."""

from __future__ import annotations

import dataclasses
import functools
import logging
import pathlib
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, event, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry

from openssm.errors import OpenSSMError

MIGRATIONS_DIR = pathlib.Path(__file__).with_name("migrations")
# Scale-out nodes starting together would otherwise race to create the same tables; any constant
# unique to OpenSSM will do ("OpenSSM" in ASCII).
MIGRATION_LOCK_KEY = 0x4F70656E53534D


# A request that found every connection of the pool in use for the pool's whole wait
# (``PoolSettings.timeout``): the database is busier than this node should add to. Callers answer it
# with AWS's ThrottlingException (the API, the server's admission), which clients back off from and
# retry. The statement that waited never ran (a request is answered as if refused at its start, and
# what it wrote before is what a retry finds already there, as after any failed request).
class DatabaseBusy(OpenSSMError):
    """Every connection of the pool was in use for the pool's whole wait (see above), or PostgreSQL
    refused a new one for lack of room (below)."""


class _Pool(AsyncAdaptedQueuePool):
    """SQLAlchemy's pool, whose wait running out is OpenSSM's ``DatabaseBusy`` (under the one
    exception root) rather than SQLAlchemy's ``TimeoutError``, which callers would otherwise have to
    know by its library's name."""

    def _do_get(self) -> ConnectionPoolEntry:
        try:
            return super()._do_get()
        except sa.exc.TimeoutError as exc:
            raise DatabaseBusy(str(exc)) from exc


# PostgreSQL refusing a new connection because it holds as many as it allows ("sorry, too many
# clients already": max_connections, or a role's or database's CONNECTION LIMIT), or because it is
# starting or shutting down: the database is busy, as when the pool's wait ran out. Several nodes'
# pools together may ask for more than max_connections (three nodes' 30 each against the default
# 100, with anything else on that server): a 3,000-agent wave on a 3-node cluster got HTTP 500s.
REFUSED_CONNECTION_STATES: Final = frozenset({"53300", "57P03"})  # too_many_connections, cannot_connect_now


@dataclasses.dataclass(frozen=True, slots=True)
class PoolSettings:
    """A node's connections to PostgreSQL: ``size`` kept open, up to ``overflow`` more in a burst, and
    how long (seconds) a caller waits for one when all are in use before it gets ``DatabaseBusy``.
    The wait is short: a request that waited SQLAlchemy's default 30 s was answered with an HTTP 500,
    after its client had often given up; a throttled one is retried with backoff."""

    size: int = 10
    overflow: int = 20
    timeout: float = 5.0


T = TypeVar("T")
log = logging.getLogger(__name__)


async def patiently(work: Callable[[], Awaitable[T]], what: str, attempts: int = 6) -> T:
    """``work()``, tried again while the database is busy: for background writes nobody retries if
    they are dropped (a closed control channel's row, the node's heartbeat). Each try waits the
    pool's wait; the last try's ``DatabaseBusy`` is raised."""
    for _ in range(attempts - 1):
        try:
            return await work()
        except DatabaseBusy:
            log.warning("database busy: %s waits for a connection again", what)
    return await work()


def database_url_for(data_dir: pathlib.Path) -> str:
    return f"sqlite+aiosqlite:///{data_dir / 'openssm.db'}"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """Write-ahead logging: a commit appends to the log and syncs it once, where the default rollback
    journal syncs the journal and the database each time (about 15 ms a commit on the test VM's
    disk, against 1 ms; a session's start commits several times on its way to the prompt), and
    readers no longer wait for a writer. ``synchronous=FULL`` keeps every commit durable (an audit
    row that was answered for survives a power cut). The mode is kept in the database file."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
    finally:
        cursor.close()


def make_engine(url: str, pool: PoolSettings = PoolSettings()) -> AsyncEngine:
    """An async engine. SQLite gets a busy timeout so concurrent writers wait instead of failing,
    and a file database write-ahead logging (see :func:`_sqlite_pragmas`); PostgreSQL a pool of
    ``pool``'s connections."""
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30})
        if engine.url.database and engine.url.database != ":memory:":
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    engine = create_async_engine(
        url,
        poolclass=_Pool,
        pool_pre_ping=True,
        pool_size=pool.size,
        max_overflow=pool.overflow,
        pool_timeout=pool.timeout,
    )
    event.listen(engine.sync_engine, "handle_error", _busy_when_refused)
    return engine


def _busy_when_refused(context: sa.engine.ExceptionContext) -> BaseException | None:
    """A connection PostgreSQL refused for lack of room is ``DatabaseBusy`` (throttled, retried),
    not an error (an HTTP 500)."""
    state = getattr(context.original_exception, "sqlstate", None)
    if state in REFUSED_CONNECTION_STATES:
        return DatabaseBusy(f"the database refused a connection: {context.original_exception}")
    return None


def _alembic_config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def _upgrade(connection: Connection) -> None:
    command.upgrade(_alembic_config(connection), "head")


async def migrate(engine: AsyncEngine) -> None:
    """Bring the schema to the newest revision (idempotent)."""
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Held until this transaction commits: a second node waits, then finds the schema current.
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        await conn.run_sync(_upgrade)


@functools.cache
def _heads() -> frozenset[str]:
    """The newest revisions this code knows (read from the migration scripts once)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return frozenset(ScriptDirectory.from_config(config).get_heads())


async def schema_is_current(engine: AsyncEngine) -> bool:
    """The database answers and its schema is at the newest revision (readiness). Reads Alembic's
    version table itself: Alembic's MigrationContext logs a line each time, and this is polled."""
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT version_num FROM alembic_version"))
        return {str(row[0]) for row in rows} == _heads()
