"""Steps the migration scripts share (``migrations/versions``): each emits exactly the DDL of the
Alembic operations it stands for, in the same order, so a script that uses one migrates a database
as it did when it spelled them out."""

from __future__ import annotations

from alembic import op


def drop_columns(table: str, *columns: str) -> None:
    """Drop ``columns`` of ``table``, in the order given, in one batch (SQLite rebuilds it once)."""
    with op.batch_alter_table(table, schema=None) as batch_op:
        for column in columns:
            batch_op.drop_column(column)


def drop_table(table: str, *indexes: str) -> None:
    """Drop ``table``, after its ``indexes`` (in the order given, in one batch)."""
    if indexes:
        with op.batch_alter_table(table, schema=None) as batch_op:
            for index in indexes:
                batch_op.drop_index(index)
    op.drop_table(table)
