"""credit grants: the reason a grant was zeroed out

Revision ID: 0008_credit_grants
Revises: 0007_push
Create Date: 2026-11-21 08:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0008_credit_grants"
down_revision: str | None = "0007_push"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("credit_grant") as batch:
        batch.add_column(
            sa.Column("zeroed_reason", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("credit_grant") as batch:
        batch.drop_column("zeroed_reason")
