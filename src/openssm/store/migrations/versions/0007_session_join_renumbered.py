"""Live-session join: the sessions whose stream a gateway node renumbered"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import openssm.store.tables
from openssm.store.revisions import numbered

revision, down_revision = numbered(__file__)


def upgrade() -> None:
    op.create_table(
        "renumbered_sessions",
        sa.Column("session_id", sa.String(length=96), nullable=False),
        sa.Column("since", openssm.store.tables.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("session_id"),
    )


def downgrade() -> None:
    op.drop_table("renumbered_sessions")
