"""Live-session join: a joined session's renumbering is kept, so it survives a gateway restart"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from alembic import op

import openssm.store.tables
from openssm.store.revisions import numbered

revision, down_revision = numbered(__file__)


def upgrade() -> None:
    # A session renumbered before this version (suspended by the upgrade's restart) has no state to
    # go on from: it ends, as that version would have ended it.
    sessions = sa.table(
        "sessions",
        sa.column("session_id", sa.String),
        sa.column("status", sa.String),
        sa.column("end_date", openssm.store.tables.UtcDateTime(timezone=True)),
        sa.column("termination_reason", sa.String),
    )
    renumbered = sa.table("renumbered_sessions", sa.column("session_id", sa.String))
    op.execute(
        sessions.update()
        .where(
            sessions.c.session_id.in_(sa.select(renumbered.c.session_id)),
            sessions.c.status.not_in(["Terminated", "Failed"]),
        )
        .values(
            status="Terminated",
            end_date=dt.datetime.now(dt.UTC),
            termination_reason="A joined session cannot be carried on by another gateway relay",
        )
    )
    op.drop_table("renumbered_sessions")
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
