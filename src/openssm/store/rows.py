"""What every entity module of the store shares: typed rows, and running a statement on an engine or
inside a caller's transaction.

Each entity module (``sessions``, ``instances``, ``iam.users`` …) is the one place that reads and
writes its table, and hands its callers frozen dataclasses whose field names are the table's column
names. Every function takes ``db``: an engine (the function runs in a short transaction of its own)
or a connection (it runs inside the caller's transaction, so several entities change together).
Nothing here holds a connection across network I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import typing
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql import Executable

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

Db = AsyncEngine | AsyncConnection
R = TypeVar("R", bound="DataclassInstance")
T = TypeVar("T")


@dataclasses.dataclass(frozen=True, slots=True)
class Convert:
    """Marks a row field whose stored value goes through ``function`` on the way out:
    ``status: Annotated[SessionStatus, Convert(SessionStatus)]``."""

    function: Callable[[Any], Any]


def _json_object(value: Any) -> dict[str, Any]:
    return dict(value or {})


def _json_list(value: Any) -> list[Any]:
    return list(value or [])


# JSON columns, as a dict or list of their own (never None): ``Annotated[list[str], JSON_LIST]``, or
# one of the aliases below.
JSON_OBJECT = Convert(_json_object)
JSON_LIST = Convert(_json_list)
JsonObject = Annotated[dict[str, Any], JSON_OBJECT]
Tags = Annotated[dict[str, str], JSON_OBJECT]


@functools.cache
def _columns(row_type: type[DataclassInstance]) -> tuple[tuple[str, Callable[[Any], Any] | None], ...]:
    hints = typing.get_type_hints(row_type, include_extras=True)
    columns = []
    for field in dataclasses.fields(row_type):
        marks = getattr(hints[field.name], "__metadata__", ())
        convert = next((mark.function for mark in marks if isinstance(mark, Convert)), None)
        columns.append((field.name, convert))
    return tuple(columns)


def row_of(row_type: type[R], row: Mapping[Any, Any]) -> R:
    """A typed row from a result row that has (at least) a column for each field of ``row_type``."""
    values = {
        name: row[name] if convert is None else convert(row[name]) for name, convert in _columns(row_type)
    }
    return row_type(**values)


@contextlib.asynccontextmanager
async def _connected(db: Db, *, transaction: bool) -> AsyncIterator[AsyncConnection]:
    if isinstance(db, AsyncConnection):
        yield db
    else:
        async with db.begin() if transaction else db.connect() as conn:
            yield conn


def reading(db: Db) -> contextlib.AbstractAsyncContextManager[AsyncConnection]:
    return _connected(db, transaction=False)


def writing(db: Db) -> contextlib.AbstractAsyncContextManager[AsyncConnection]:
    """A transaction of its own on an engine; on a connection, the caller's transaction."""
    return _connected(db, transaction=True)


Work = Callable[[AsyncConnection], Awaitable[T]]
# The most transactions one commit carries: a batch stays a short transaction.
GROUP_COMMIT_LIMIT = 256


class _GroupCommit:
    """The SQLite writes of one process's many concurrent callers, merged. One writer task takes every
    queued piece of work and runs them in turn in one transaction with one commit, while new callers
    queue for the next. A piece that fails (or a commit that does) fails no other caller: that batch
    is rolled back and each of its pieces runs again in a transaction of its own."""

    def __init__(self) -> None:
        self.pending: list[tuple[Work[Any], asyncio.Future[Any]]] = []
        self.writer: asyncio.Task[None] | None = None

    async def run(self, engine: AsyncEngine, work: Work[T]) -> T:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self.pending.append((work, future))
        if self.writer is None:
            self.writer = asyncio.create_task(self._write(engine), name="group-commit")
        return await future

    async def _write(self, engine: AsyncEngine) -> None:
        try:
            while self.pending:
                batch = self.pending[:GROUP_COMMIT_LIMIT]
                del self.pending[:GROUP_COMMIT_LIMIT]
                await self._commit(engine, batch)
        except BaseException:
            for _, future in self.pending:
                future.cancel()
            self.pending.clear()
            raise
        finally:
            self.writer = None

    @staticmethod
    async def _commit(engine: AsyncEngine, batch: list[tuple[Work[Any], asyncio.Future[Any]]]) -> None:
        try:
            if len(batch) > 1 and await _GroupCommit._together(engine, batch):
                return
            for work, future in batch:  # alone, so that a failure is its own caller's only
                try:
                    async with writing(engine) as conn:
                        result = await work(conn)
                except Exception as exc:
                    _settle(future, error=exc)
                else:
                    _settle(future, result)
        except BaseException:
            for _, future in batch:
                future.cancel()
            raise

    @staticmethod
    async def _together(engine: AsyncEngine, batch: list[tuple[Work[Any], asyncio.Future[Any]]]) -> bool:
        """The whole batch in one transaction; False (rolled back) if any of it failed."""
        try:
            async with writing(engine) as conn:
                results = [await work(conn) for work, _ in batch]
        except Exception:
            return False
        for (_, future), result in zip(batch, results, strict=True):
            _settle(future, result)
        return True


def _settle(future: asyncio.Future[Any], result: Any = None, *, error: Exception | None = None) -> None:
    """Give a caller its result or its error, unless it has stopped waiting (cancelled)."""
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


_group_commits: weakref.WeakKeyDictionary[Any, _GroupCommit] = weakref.WeakKeyDictionary()


async def queued_write(engine: AsyncEngine, work: Work[T]) -> T:
    """``work(conn)``'s result, after a commit of its own writes on ``conn``: for paths many callers
    take at once (a fleet registering, fetching its first role credentials, first reporting). SQLite
    takes one writer at a time, lets the others retry on a timer (sleeps of up to 100 ms: 64
    registrations at once made 31 a second where one at a time made 150) and syncs the disk at each
    commit; each statement is a round trip to aiosqlite's thread. So on SQLite the callers of this
    process queue instead and their work is group-committed (``_GroupCommit``): one transaction,
    one commit and one sync for as many as are waiting. ``work`` may run twice (its batch failed for
    another's sake): it only writes through ``conn``, never catches a database error, and what it
    returns is decided inside it. Never call this from inside another write transaction on the
    same engine (the queue would wait for it for ever). PostgreSQL takes concurrent writers: a
    transaction of its own there."""
    if engine.dialect.name != "sqlite":
        async with engine.begin() as conn:
            return await work(conn)
    group = _group_commits.get(engine.sync_engine)
    if group is None:
        group = _group_commits[engine.sync_engine] = _GroupCommit()
    return await group.run(engine, work)


async def first(db: Db, query: Executable, row_type: type[R]) -> R | None:
    async with reading(db) as conn:
        row = (await conn.execute(query)).mappings().first()
    return None if row is None else row_of(row_type, row)


async def every(db: Db, query: Executable, row_type: type[R]) -> list[R]:
    async with reading(db) as conn:
        return [row_of(row_type, row) for row in (await conn.execute(query)).mappings()]


async def scalars(db: Db, query: Executable) -> list[Any]:
    async with reading(db) as conn:
        return list((await conn.execute(query)).scalars())


async def count(db: Db, query: sa.Select[Any]) -> int:
    """How many rows ``query`` yields."""
    async with reading(db) as conn:
        counted = sa.select(sa.func.count()).select_from(query.subquery())
        return int((await conn.execute(counted)).scalar_one())


async def execute(db: Db, statement: Executable) -> int:
    """Run one INSERT/UPDATE/DELETE; how many rows it touched."""
    async with writing(db) as conn:
        result = await conn.execute(statement)
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
