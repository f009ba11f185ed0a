"""catalog stamp: a counter bumped by triggers on every catalog write

The Stripe applier keeps its catalog lookups (price -> plan, published versions, credits...)
across batches while this counter is unchanged: one primary-key read per batch, whatever the
catalog's size. On Postgres, statement-level triggers on each catalog table the mapping reads
bump it inside the writing transaction, so a reader sees the new counter exactly when it can
see the new catalog. SQLite builds its lookups per batch and ignores the counter.

Revision ID: 0009_catalog_stamp
Revises: 0008_credit_grants
Create Date: 2026-11-21 13:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_catalog_stamp"
down_revision: str | None = "0008_credit_grants"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The stamp is the one in the changed table's own schema (deployments may use several).
BUMP = """
CREATE OR REPLACE FUNCTION syncd_catalog_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('UPDATE %I.catalog_stamp SET version = version + 1 WHERE id = 1', TG_TABLE_SCHEMA);
    RETURN NULL;
END
$$
"""

# On each catalog table the mapping reads (syncd.stripe_sync.catalog_cache.CATALOG_TABLES,
# as of this revision).
CREATE_TRIGGERS = (
    "DO $$ DECLARE t text; BEGIN FOREACH t IN ARRAY"
    " ARRAY['catalog_settings', 'plan', 'plan_version', 'plan_price', 'plan_entitlement',"
    " 'plan_credit_grant', 'trait_definition'] LOOP"
    " EXECUTE format('CREATE TRIGGER %I AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON %I"
    " FOR EACH STATEMENT EXECUTE FUNCTION syncd_catalog_changed()', t || '_stamp', t);"
    " END LOOP; END $$"
)
DROP_TRIGGERS = (
    "DO $$ DECLARE t text; BEGIN FOREACH t IN ARRAY"
    " ARRAY['catalog_settings', 'plan', 'plan_version', 'plan_price', 'plan_entitlement',"
    " 'plan_credit_grant', 'trait_definition'] LOOP"
    " EXECUTE format('DROP TRIGGER IF EXISTS %I ON %I', t || '_stamp', t);"
    " END LOOP; END $$"
)


def upgrade() -> None:
    stamp = op.create_table(
        "catalog_stamp",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.bulk_insert(stamp, [{"id": 1, "version": 0}])
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(BUMP)
    op.execute(CREATE_TRIGGERS)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(DROP_TRIGGERS)
        op.execute("DROP FUNCTION IF EXISTS syncd_catalog_changed()")
    op.drop_table("catalog_stamp")
