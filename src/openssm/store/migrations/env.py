"""Alembic environment: always run with a connection handed in by ``openssm.store.db``."""

from __future__ import annotations

from alembic import context

from openssm.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through openssm.store.db.migrate (or scripts/refresh-migration)")
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
