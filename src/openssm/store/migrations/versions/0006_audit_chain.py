"""Tamper-evident audit trail: the signed digests of the audit log

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import openssm.store.tables

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


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
