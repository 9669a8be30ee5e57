"""The authorisation generation: one counter, bumped by triggers on every change that can alter an
authorisation decision, which nodes' caches of credentials, principals and policies are checked against
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from openssm.store.authz_generation import trigger_ddl
from openssm.store.revisions import numbered

revision, down_revision = numbered(__file__)


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
