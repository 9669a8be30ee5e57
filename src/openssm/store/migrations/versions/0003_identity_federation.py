"""identity federation: MFA on temporary credentials, IAM OIDC providers, the TOTP replay guard"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import openssm.store.tables
from openssm.store.migration_steps import drop_columns, drop_table
from openssm.store.revisions import numbered

revision, down_revision = numbered(__file__)


def upgrade() -> None:
    with op.batch_alter_table("access_keys", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("mfa_authenticated_at", openssm.store.tables.UtcDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("federated_provider", sa.String(length=2048), nullable=True))
    with op.batch_alter_table("console_sessions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("mfa_authenticated_at", openssm.store.tables.UtcDateTime(timezone=True), nullable=True)
        )
    op.create_table(
        "iam_oidc_providers",
        sa.Column("arn", sa.String(length=2048), nullable=False),
        sa.Column("url", sa.String(length=255), nullable=False),
        sa.Column("scheme", sa.String(length=8), nullable=False),
        sa.Column("client_ids", sa.JSON(), nullable=False),
        sa.Column("thumbprints", sa.JSON(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("created_at", openssm.store.tables.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("arn", name=op.f("pk_iam_oidc_providers")),
        sa.UniqueConstraint("url", name=op.f("uq_iam_oidc_providers_url")),
    )
    op.create_table(
        "mfa_used_steps",
        sa.Column("user_name", sa.String(length=64), nullable=False),
        sa.Column("last_step", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("user_name", name=op.f("pk_mfa_used_steps")),
    )


def downgrade() -> None:
    drop_table("mfa_used_steps")
    drop_table("iam_oidc_providers")
    drop_columns("console_sessions", "mfa_authenticated_at")
    drop_columns("access_keys", "federated_provider", "mfa_authenticated_at")
