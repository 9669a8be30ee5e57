"""PostgreSQL and Redis for scale-out tests: reachability, and a throw-away database per test.

Each caller gets a database of its own (created through the maintenance database and dropped
afterwards), so tests running in parallel never see each other's rows.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import secrets
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import asyncpg  # type: ignore[import-untyped]
import redis
from sqlalchemy.engine import make_url

from tests.conftest import require

# The maintenance database of a PostgreSQL server the tests may create databases on.
POSTGRES_URL = os.environ.get("OPENSSM_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("OPENSSM_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

T = TypeVar("T")


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run to completion, also when called from async code (then on a worker thread's loop)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def postgres_problem() -> str | None:
    async def probe() -> None:
        connection = await asyncpg.connect(POSTGRES_URL, timeout=3)
        await connection.close()

    try:
        _run(probe())
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return f"PostgreSQL not reachable at {POSTGRES_URL} (set OPENSSM_TEST_POSTGRES_URL): {exc}"
    return None


def redis_problem() -> str | None:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except (OSError, redis.RedisError) as exc:
        return f"Redis not reachable at {REDIS_URL} (set OPENSSM_TEST_REDIS_URL): {exc}"
    finally:
        client.close()
    return None


def require_postgres() -> None:
    """Skip (or, in CI, fail) when PostgreSQL is missing."""
    problem = postgres_problem()
    require(problem is None, problem or "")


def require_postgres_and_redis() -> None:
    """Skip (or, in CI, fail) when the scale-out services are missing."""
    require_postgres()
    problem = redis_problem()
    require(problem is None, problem or "")


async def _admin(statement: str) -> None:
    connection = await asyncpg.connect(POSTGRES_URL, timeout=10)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def create_database() -> tuple[str, str]:
    """A new empty database: (its name, its SQLAlchemy async URL)."""
    name = f"openssm_{secrets.token_hex(6)}"
    _run(_admin(f'CREATE DATABASE "{name}"'))
    url = make_url(POSTGRES_URL).set(drivername="postgresql+asyncpg", database=name)
    return name, url.render_as_string(hide_password=False)


def drop_database(name: str) -> None:
    # FORCE: a server killed mid-test may leave connections PostgreSQL has not noticed yet.
    _run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextlib.contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A new empty database; yields its SQLAlchemy async URL and drops it afterwards."""
    name, url = create_database()
    try:
        yield url
    finally:
        drop_database(name)


def fetch_value(database_url: str, query: str, *args: object) -> object:
    """One value from a test database (``database_url`` as given to the server)."""

    async def fetch() -> object:
        dsn = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
        connection = await asyncpg.connect(dsn, timeout=10)
        try:
            return await connection.fetchval(query, *args)
        finally:
            await connection.close()

    return _run(fetch())
