"""Postgres: large JSON payloads compressed with lz4 rather than pglz

A mirrored Stripe subscription is ~3 KB of JSON, over the 2 KB at which Postgres compresses a
value on write; pglz cost ~14 µs a row in a backfill's insert, lz4 about a third of that,
and lz4 reads back several times faster. Only values written afterwards are compressed with
lz4 (existing ones keep pglz, and read as before). Servers without lz4 (built without it, or
older than Postgres 14) keep pglz; SQLite has no such setting. Each ALTER only changes the
catalog (no table is rewritten), under a brief exclusive lock on its table.

Revision ID: 0011_lz4_payloads
Revises: 0010_company_plan_indexes
Create Date: 2026-11-21 23:20:00
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.schema import DDLElement

revision: str = "0011_lz4_payloads"
down_revision: str | None = "0010_company_plan_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The columns whose values often pass 2 KB: Stripe objects, raw events, snapshots, payloads.
COLUMNS: tuple[tuple[str, str], ...] = (
    *(
        (f"stripe_{kind}", "data")
        for kind in (
            "product",
            "price",
            "customer",
            "subscription",
            "subscription_schedule",
            "invoice",
            "meter",
        )
    ),
    ("inbox_event", "payload"),
    ("change_log", "payload"),
    ("outbox_message", "payload"),
    ("webhook_delivery", "payload"),
    ("audit_log", "before"),
    ("audit_log", "after"),
)


def _has_lz4() -> bool:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return False
    found = bind.execute(
        sa.text("SELECT enumvals FROM pg_settings WHERE name = 'default_toast_compression'")
    ).scalar()
    return found is not None and "lz4" in found


class SetCompression(DDLElement):
    """``ALTER TABLE ... ALTER COLUMN ... SET COMPRESSION``, identifiers quoted by the dialect."""

    inherit_cache = False

    def __init__(self, table: str, column: str, method: str) -> None:
        if method not in ("lz4", "pglz", "default"):
            raise ValueError(f"unknown compression method {method!r}")
        self.table, self.column, self.method = table, column, method


@compiles(SetCompression, "postgresql")
def _alter(element: SetCompression, compiler: Any, **_: Any) -> str:
    quote = compiler.preparer.quote
    return (
        f"ALTER TABLE {quote(element.table)} ALTER COLUMN {quote(element.column)} "
        f"SET COMPRESSION {element.method}"
    )


def _set(method: str) -> None:
    for table, column in COLUMNS:
        op.execute(SetCompression(table, column, method))


def upgrade() -> None:
    if _has_lz4():
        _set("lz4")


def downgrade() -> None:
    if _has_lz4():
        _set("default")  # as before: whatever default_toast_compression says
