"""Just-in-time access: access requests, the webhook's outbox, and the details of audit events"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import openssm.store.tables
from openssm.store.migration_steps import drop_columns, drop_table
from openssm.store.revisions import numbered

revision, down_revision = numbered(__file__)


def upgrade() -> None:
    op.create_table(
        "access_requests",
        sa.Column("request_id", sa.String(length=32), nullable=False),
        sa.Column("requester_arn", sa.String(length=2048), nullable=False),
        sa.Column("requester_name", sa.String(length=128), nullable=False),
        sa.Column("requester_user_id", sa.String(length=160), nullable=False),
        sa.Column("grant_holder_type", sa.String(length=8), nullable=False),
        sa.Column("grant_holder_name", sa.String(length=128), nullable=False),
        sa.Column("target", sa.String(length=400), nullable=False),
        sa.Column("document_name", sa.String(length=128), nullable=False),
        sa.Column("duration_seconds", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=1024), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", openssm.store.tables.UtcDateTime(timezone=True), nullable=False),
        sa.Column("pending_until", openssm.store.tables.UtcDateTime(timezone=True), nullable=False),
        sa.Column("decided_at", openssm.store.tables.UtcDateTime(timezone=True), nullable=True),
        sa.Column("decider_arn", sa.String(length=2048), nullable=True),
        sa.Column("decider_name", sa.String(length=128), nullable=True),
        sa.Column("decision_reason", sa.String(length=1024), nullable=True),
        sa.Column("expires_at", openssm.store.tables.UtcDateTime(timezone=True), nullable=True),
        sa.Column("ended_at", openssm.store.tables.UtcDateTime(timezone=True), nullable=True),
        sa.Column("ended_by_arn", sa.String(length=2048), nullable=True),
        sa.Column("end_reason", sa.String(length=256), nullable=True),
        sa.PrimaryKeyConstraint("request_id", name=op.f("pk_access_requests")),
    )
    with op.batch_alter_table("access_requests", schema=None) as batch_op:
        batch_op.create_index("ix_access_requests_requester", ["requester_arn"], unique=False)
        batch_op.create_index("ix_access_requests_status", ["status", "expires_at"], unique=False)

    op.create_table(
        "access_webhook_deliveries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("delivery_id", sa.String(length=36), nullable=False),
        sa.Column("request_id", sa.String(length=32), nullable=False),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", openssm.store.tables.UtcDateTime(timezone=True), nullable=False),
        sa.Column("claimed_by", sa.String(length=64), nullable=True),
        sa.Column("claimed_until", openssm.store.tables.UtcDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=1024), nullable=True),
        sa.Column("created_at", openssm.store.tables.UtcDateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", openssm.store.tables.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_webhook_deliveries")),
        sa.UniqueConstraint("delivery_id", name=op.f("uq_access_webhook_deliveries_delivery_id")),
    )
    with op.batch_alter_table("access_webhook_deliveries", schema=None) as batch_op:
        batch_op.create_index("ix_access_webhook_deliveries_due", ["status", "next_attempt_at"], unique=False)

    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.add_column(sa.Column("detail", sa.JSON(), nullable=True))


def downgrade() -> None:
    drop_columns("audit_log", "detail")
    drop_table("access_webhook_deliveries", "ix_access_webhook_deliveries_due")
    drop_table("access_requests", "ix_access_requests_status", "ix_access_requests_requester")
