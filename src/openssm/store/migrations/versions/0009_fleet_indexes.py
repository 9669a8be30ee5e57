"""Fleets: an index for PingStatus filters and a node's failover (instances by control node)"""

from __future__ import annotations

from alembic import op

from openssm.store.revisions import numbered

revision, down_revision = numbered(__file__)


def upgrade() -> None:
    op.create_index("ix_instances_control_node", "instances", ["control_node_id"])


def downgrade() -> None:
    op.drop_index("ix_instances_control_node", table_name="instances")
