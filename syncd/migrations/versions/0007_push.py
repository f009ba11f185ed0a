"""push: usage outbox batches for Stripe meter events

Revision ID: 0007_push
Revises: 0006_webhooks
Create Date: 2026-11-21 08:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

import syncd.models.base

revision: str = "0007_push"
down_revision: str | None = "0006_webhooks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "stripe_meter_batch",
        sa.Column("identifier", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("company_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("event_name", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("customer_id", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("window_start", syncd.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("note", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", syncd.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("sent_at", syncd.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["company_id"],
            ["company.id"],
            name=op.f("fk_stripe_meter_batch_company_id_company"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("identifier", name=op.f("pk_stripe_meter_batch")),
    )
    with op.batch_alter_table("stripe_meter_batch", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_stripe_meter_batch_company_id"), ["company_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_stripe_meter_batch_status"), ["status"], unique=False)
    with op.batch_alter_table("usage_event", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("stripe_batch_id", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True)
        )
        batch_op.create_index(batch_op.f("ix_usage_event_stripe_batch_id"), ["stripe_batch_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("usage_event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_usage_event_stripe_batch_id"))
        batch_op.drop_column("stripe_batch_id")
    with op.batch_alter_table("stripe_meter_batch", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_stripe_meter_batch_status"))
        batch_op.drop_index(batch_op.f("ix_stripe_meter_batch_company_id"))
    op.drop_table("stripe_meter_batch")
