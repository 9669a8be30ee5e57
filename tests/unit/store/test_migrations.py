"""The Alembic chain builds exactly the schema ``store.tables`` describes (a column added to one but
not the other fails here, not on a user's database)."""

from __future__ import annotations

import pathlib

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection

from openssm.store.db import make_engine, migrate
from openssm.store.tables import metadata


async def test_migrated_schema_matches_the_tables(tmp_path: pathlib.Path) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
    try:
        await migrate(engine)

        def differences(connection: Connection) -> list[object]:
            context = MigrationContext.configure(connection, opts={"compare_type": False})
            return [
                diff
                for diff in compare_metadata(context, metadata)
                if not (
                    isinstance(diff, tuple)
                    and diff[0] == "remove_table"
                    and diff[1].name == "alembic_version"
                )
            ]

        async with engine.connect() as conn:
            assert await conn.run_sync(differences) == []
    finally:
        await engine.dispose()
