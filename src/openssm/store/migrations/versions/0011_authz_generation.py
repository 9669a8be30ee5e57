"""The authorisation generation: one counter, bumped by triggers on every change that can alter an
authorisation decision, which nodes' caches of credentials, principals and policies are checked against

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from openssm.store.authz_generation import trigger_ddl

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "authz_generation",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_authz_generation")),
    )
    op.execute("INSERT INTO authz_generation (id, value) VALUES (1, 0)")
    for statement in trigger_ddl(op.get_bind().dialect.name).create:
        op.execute(statement)


def downgrade() -> None:
    for statement in trigger_ddl(op.get_bind().dialect.name).drop:
        op.execute(statement)
    op.drop_table("authz_generation")
