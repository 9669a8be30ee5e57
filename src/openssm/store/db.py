"""Engine creation and schema migrations (Alembic, run in-process at server start)."""

from __future__ import annotations

import pathlib

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

MIGRATIONS_DIR = pathlib.Path(__file__).with_name("migrations")


def database_url_for(data_dir: pathlib.Path) -> str:
    return f"sqlite+aiosqlite:///{data_dir / 'openssm.db'}"


def make_engine(url: str) -> AsyncEngine:
    """An async engine. SQLite gets a busy timeout so concurrent writers wait instead of failing."""
    if url.startswith("sqlite"):
        return create_async_engine(url, connect_args={"timeout": 30})
    return create_async_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


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
        await conn.run_sync(_upgrade)
