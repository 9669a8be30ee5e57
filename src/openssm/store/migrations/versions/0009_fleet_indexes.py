"""Fleets: an index for PingStatus filters and a node's failover (instances by control node)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_instances_control_node", "instances", ["control_node_id"])


def downgrade() -> None:
    op.drop_index("ix_instances_control_node", table_name="instances")
