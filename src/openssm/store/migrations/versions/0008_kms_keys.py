"""KMS session encryption: the keys (material encrypted under the master key) and their aliases"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import openssm.store.tables
from openssm.store.revisions import numbered

revision, down_revision = numbered(__file__)


def upgrade() -> None:
    op.create_table(
        "kms_keys",
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("description", sa.String(length=8192), nullable=False),
        sa.Column("key_state", sa.String(length=32), nullable=False),
        sa.Column("material_encrypted", sa.LargeBinary(), nullable=False),
        sa.Column("created_by", sa.String(length=2048), nullable=False),
        sa.Column("created_at", openssm.store.tables.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key_id", name=op.f("pk_kms_keys")),
    )
    op.create_table(
        "kms_aliases",
        sa.Column("alias_name", sa.String(length=256), nullable=False),
        sa.Column("target_key_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", openssm.store.tables.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["target_key_id"],
            ["kms_keys.key_id"],
            name=op.f("fk_kms_aliases_target_key_id_kms_keys"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("alias_name", name=op.f("pk_kms_aliases")),
    )


def downgrade() -> None:
    op.drop_table("kms_aliases")
    op.drop_table("kms_keys")
