"""company_plan indexes: no duplicate of the unique key, timers' indexes partial

Every plan write (a backfill writes one per company) updated eight indexes. The one on
``company_id`` duplicates the unique ``(company_id, plan_id)`` key, which serves the same
lookups. ``trial_end`` and ``access_until`` are NULL for most rows (no trial, no end in
sight), and the timers that read them ask for rows at or before a time, which a NULL never
is: the indexes keep only the rows with a value.

Revision ID: 0010_company_plan_indexes
Revises: 0009_catalog_stamp
Create Date: 2026-11-21 18:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_company_plan_indexes"
down_revision: str | None = "0009_catalog_stamp"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMERS = ("trial_end", "access_until")


def upgrade() -> None:
    op.drop_index("ix_company_plan_company_id", table_name="company_plan")
    for name in TIMERS:
        op.drop_index(f"ix_company_plan_{name}", table_name="company_plan")
        present = sa.column(name).is_not(None)
        op.create_index(
            f"ix_company_plan_{name}",
            "company_plan",
            [name],
            postgresql_where=present,
            sqlite_where=present,
        )


def downgrade() -> None:
    for name in TIMERS:
        op.drop_index(f"ix_company_plan_{name}", table_name="company_plan")
        op.create_index(f"ix_company_plan_{name}", "company_plan", [name])
    op.create_index("ix_company_plan_company_id", "company_plan", ["company_id"])
