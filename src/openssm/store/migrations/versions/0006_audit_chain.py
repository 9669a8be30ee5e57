"""Tamper-evident audit trail: the signed digests of the audit log"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import openssm.store.tables
from openssm.store.revisions import numbered

revision, down_revision = numbered(__file__)


def upgrade() -> None:
    op.create_table(
        "audit_digests",
        sa.Column("sequence", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("created_at", openssm.store.tables.UtcDateTime(timezone=True), nullable=False),
        sa.Column("first_id", sa.Integer(), nullable=False),
        sa.Column("last_id", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("signature", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("sequence", name=op.f("pk_audit_digests")),
    )


def downgrade() -> None:
    op.drop_table("audit_digests")
