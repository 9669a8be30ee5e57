"""The Alembic chain builds exactly the schema ``store.tables`` describes (a column added to one but
not the other fails here, not on a user's database)."""

from __future__ import annotations

import pathlib

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

from openssm.store.db import MIGRATIONS_DIR, make_engine, migrate
from openssm.store.revisions import MigrationNameError, numbered
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


def test_the_chain_is_the_file_numbers_in_order() -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    scripts = {script.revision: script for script in ScriptDirectory.from_config(config).walk_revisions()}
    numbers = sorted(path.name[:4] for path in (MIGRATIONS_DIR / "versions").glob("*.py"))
    assert sorted(scripts) == numbers
    assert [scripts[number].down_revision for number in numbers] == [None, *numbers[:-1]]
    assert all(pathlib.Path(scripts[number].path).name.startswith(number) for number in numbers)


@pytest.mark.parametrize("name", ["initial.py", "0000_nothing.py", "12_short.py", "0012_x.txt"])
def test_a_script_not_named_nnnn_what_is_refused(name: str) -> None:
    with pytest.raises(MigrationNameError, match=r"NNNN_what\.py"):
        numbered(f"/somewhere/{name}")


def test_a_later_script_follows_the_one_numbered_before_it() -> None:
    assert numbered("/v/0012_new_table.py") == ("0012", "0011")
    assert numbered("/v/0001_initial_schema.py") == ("0001", None)
