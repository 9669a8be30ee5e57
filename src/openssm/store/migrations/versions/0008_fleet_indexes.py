"""Fleet indexes: instances by the node holding their control channel

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_instances_control_node", "instances", ["control_node_id"])


def downgrade() -> None:
    op.drop_index("ix_instances_control_node", table_name="instances")
