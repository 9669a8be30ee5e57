"""Scale-out on loopback: several real `openssm server` nodes on one PostgreSQL database and one Redis.

Each cluster gets a database of its own (created through the ``postgres`` maintenance database and
dropped afterwards), so tests running in parallel never see each other's rows.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import os
import pathlib
import secrets
import signal
from collections.abc import Iterator, Sequence

import asyncpg
import redis
from sqlalchemy.engine import make_url

from tests.conftest import require
from tests.e2e.harness import Server

# The maintenance database of a PostgreSQL server the tests may create databases on.
POSTGRES_URL = os.environ.get("OPENSSM_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("OPENSSM_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _postgres_problem() -> str | None:
    async def probe() -> None:
        connection = await asyncpg.connect(POSTGRES_URL, timeout=3)
        await connection.close()

    try:
        asyncio.run(probe())
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return f"PostgreSQL not reachable at {POSTGRES_URL} (set OPENSSM_TEST_POSTGRES_URL): {exc}"
    return None


def _redis_problem() -> str | None:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except (OSError, redis.RedisError) as exc:
        return f"Redis not reachable at {REDIS_URL} (set OPENSSM_TEST_REDIS_URL): {exc}"
    finally:
        client.close()
    return None


def require_postgres_and_redis() -> None:
    """Skip (or, in CI, fail) when the scale-out services are missing."""
    for problem in (_postgres_problem(), _redis_problem()):
        require(problem is None, problem or "")


async def _admin(statement: str) -> None:
    connection = await asyncpg.connect(POSTGRES_URL, timeout=10)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@contextlib.contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A new empty database; yields its SQLAlchemy async URL and drops it afterwards."""
    name = f"openssm_{secrets.token_hex(6)}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        url = make_url(POSTGRES_URL).set(drivername="postgresql+asyncpg", database=name)
        yield url.render_as_string(hide_password=False)
    finally:
        # FORCE: a node killed mid-test may leave connections the server has not noticed yet.
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def new_master_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode("ascii")


class Node(Server):
    """One scale-out server node: its own data dir, port, node id and public URL."""

    def __init__(
        self, data_dir: pathlib.Path, *, node_id: str, database_url: str, redis_url: str, master_key: str
    ) -> None:
        env = {**os.environ, "OPENSSM_MASTER_KEY": master_key}
        args = ("--database-url", database_url, "--redis-url", redis_url, "--node-id", node_id)
        super().__init__(data_dir, extra_args=args, env=env)
        self.node_id = node_id

    def kill(self) -> None:
        """Crash the node: no shutdown, no clean-up of its sessions or heartbeat row."""
        if self.process is not None:
            self.process.stop(signal.SIGKILL)


def start_together(nodes: Sequence[Server]) -> None:
    """Start every node at the same moment (they race to migrate and bootstrap the database)."""
    with concurrent.futures.ThreadPoolExecutor(len(nodes)) as pool:
        for future in [pool.submit(node.start) for node in nodes]:
            future.result()


@contextlib.contextmanager
def running_cluster(tmp_path: pathlib.Path, size: int = 2) -> Iterator[list[Node]]:
    require_postgres_and_redis()
    master_key = new_master_key()
    with fresh_postgres_database() as database_url:
        nodes = [
            Node(
                tmp_path / f"node-{index}",
                node_id=f"node-{index}",
                database_url=database_url,
                redis_url=REDIS_URL,
                master_key=master_key,
            )
            for index in range(size)
        ]
        try:
            start_together(nodes)
            yield nodes
        finally:
            for node in nodes:
                node.stop()
