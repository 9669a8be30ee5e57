"""The database trace counts each step's statements, commits and checkouts (what the latency bench's
server-side breakdown is built from), and a file database runs in write-ahead-log mode."""

from __future__ import annotations

import logging
import pathlib

import pytest
import sqlalchemy as sa

from openssm.store import trace
from openssm.store.db import make_engine
from openssm.store.rows import execute, scalars, writing

TABLE = sa.Table("t", sa.MetaData(), sa.Column("x", sa.Integer))


async def test_a_step_counts_its_own_work_only(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
    try:
        async with engine.begin() as conn:
            await conn.run_sync(TABLE.metadata.create_all)
        trace.install(engine)
        caplog.set_level(logging.INFO, logger=trace.__name__)
        await execute(engine, sa.insert(TABLE).values(x=0))  # outside any step: not counted
        with trace.step("api", "", "key-1") as counted:
            async with writing(engine) as conn:  # one transaction, two statements
                await execute(conn, sa.insert(TABLE).values(x=1))
                await execute(conn, sa.insert(TABLE).values(x=2))
            assert await scalars(engine, sa.select(TABLE.c.x)) == [0, 1, 2]
            counted.name = "ssm:Example"
        assert (counted.statements, counted.commits, counted.checkouts) == (3, 1, 2)
        [line] = [record.getMessage() for record in caplog.records if "db trace" in record.getMessage()]
        assert line.startswith("db trace: api ssm:Example key-1: 3 statements, 1 commits, 2 checkouts, ")
    finally:
        await engine.dispose()


async def test_a_file_database_uses_a_write_ahead_log(tmp_path: pathlib.Path) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(sa.text("PRAGMA journal_mode"))).scalar_one() == "wal"
            assert (await conn.execute(sa.text("PRAGMA synchronous"))).scalar_one() == 2  # FULL
    finally:
        await engine.dispose()
