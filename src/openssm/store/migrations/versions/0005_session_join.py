"""Live-session join: the sessions whose owner refuses joins"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import openssm.store.tables
from openssm.store.revisions import numbered

revision, down_revision = numbered(__file__)


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
