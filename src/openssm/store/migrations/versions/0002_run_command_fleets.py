"""Run Command for fleets: rate controls (when each invocation was dispatched), CloudWatch output of
commands, and CloudWatch streams and event formats of log uploads.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import openssm.store.tables
from openssm.store.migration_steps import drop_columns
from openssm.store.revisions import numbered

revision, down_revision = numbered(__file__)


def upgrade() -> None:
    with op.batch_alter_table("command_invocations", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("dispatched_at", openssm.store.tables.UtcDateTime(timezone=True), nullable=True)
        )

    with op.batch_alter_table("commands", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cloudwatch_log_group_name", sa.String(length=512), nullable=True))
        batch_op.add_column(
            sa.Column("cloudwatch_output_enabled", sa.Boolean(), server_default=sa.false(), nullable=False)
        )

    with op.batch_alter_table("log_uploads", schema=None) as batch_op:
        batch_op.add_column(sa.Column("log_stream", sa.String(length=512), nullable=True))
        batch_op.add_column(
            sa.Column("event_format", sa.String(length=16), server_default="text", nullable=False)
        )


def downgrade() -> None:
    drop_columns("log_uploads", "event_format", "log_stream")
    drop_columns("commands", "cloudwatch_output_enabled", "cloudwatch_log_group_name")
    drop_columns("command_invocations", "dispatched_at")
