"""Fleet indexes: instances by the node holding their control channel

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_instances_control_node", "instances", ["control_node_id"])


def downgrade() -> None:
    op.drop_index("ix_instances_control_node", table_name="instances")
