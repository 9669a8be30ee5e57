"""Live-session join: a joined session's renumbering is kept, so it survives a gateway restart

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import openssm.store.tables

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_table("renumbered_sessions")  # a row only said "cannot go on"; the state now can
    op.create_table(
        "session_splices",
        sa.Column("session_id", sa.String(length=96), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("saved_at", openssm.store.tables.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("session_id"),
    )


def downgrade() -> None:
    op.drop_table("session_splices")
    op.create_table(
        "renumbered_sessions",
        sa.Column("session_id", sa.String(length=96), nullable=False),
        sa.Column("since", openssm.store.tables.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("session_id"),
    )
