"""Fixtures the integration tests share."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import pytest
from tests.support import postgres

from openssm.store.db import database_url_for


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Iterator[str]:
    """The test runs twice: on SQLite in its directory, and on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield database_url_for(tmp_path)
        return
    postgres.require_postgres()
    with postgres.fresh_postgres_database() as url:
        yield url


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database, for tests of what only PostgreSQL does (the database's clock)."""
    postgres.require_postgres()
    with postgres.fresh_postgres_database() as url:
        yield url
