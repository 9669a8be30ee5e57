"""Live-session join: the sessions whose owner refuses joins

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import openssm.store.tables

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "session_join_refusals",
        sa.Column("session_id", sa.String(length=96), nullable=False),
        sa.Column("refused_by", sa.String(length=2048), nullable=False),
        sa.Column("refused_at", openssm.store.tables.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("session_id"),
    )


def downgrade() -> None:
    op.drop_table("session_join_refusals")
