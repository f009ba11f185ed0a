"""Plain-dict rows for set-based writes: a batch's plan moves, a page's new companies.

Building an ORM object costs ~0.5 ms (SQLModel's constructor and instrumented attributes);
a dict costs microseconds. Mapping a webhook batch or a sweep page therefore collects its
inserts here and writes them with one ``executemany`` per table, in foreign-key order, and
deletes with one statement per table. The rows are the same ones the per-company services
write (ids, timestamps, JSON snapshots in the shape :func:`~syncd.services.audit.snapshot`
gives).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Table, bindparam, delete, insert, update
from sqlmodel import Session

from .. import bulk
from ..db import one_of, pipeline
from ..models import AuditLog, Company, CompanyKey, CompanyPlan, PlanChange, StripeSubscription
from ..models.base import new_id
from ..services.audit import Actor

Row = dict[str, Any]

COMPANY: Table = Company.__table__  # type: ignore[attr-defined]
COMPANY_KEY: Table = CompanyKey.__table__  # type: ignore[attr-defined]
COMPANY_PLAN: Table = CompanyPlan.__table__  # type: ignore[attr-defined]
PLAN_CHANGE: Table = PlanChange.__table__  # type: ignore[attr-defined]
AUDIT_LOG: Table = AuditLog.__table__  # type: ignore[attr-defined]
SUBSCRIPTIONS: Table = StripeSubscription.__table__  # type: ignore[attr-defined]
INSERT_ORDER = (COMPANY, COMPANY_KEY, COMPANY_PLAN, PLAN_CHANGE, AUDIT_LOG)


class PendingWrites:
    """Inserts, updates and deletes collected for one batch; :meth:`write` sends them."""

    def __init__(self) -> None:
        self.inserts: dict[Table, list[Row]] = {}
        self.deletes: dict[Table, list[str]] = {}
        self.updates: dict[tuple[Table, tuple[str, ...]], list[Row]] = {}

    def insert(self, table: Table, row: Row) -> Row:
        self.inserts.setdefault(table, []).append(row)
        return row

    def delete(self, table: Table, row_id: str) -> None:
        self.deletes.setdefault(table, []).append(row_id)

    def update(self, table: Table, row_id: str, values: Row) -> None:
        names = tuple(sorted(values))
        self.updates.setdefault((table, names), []).append({"id": row_id, **values})

    def __bool__(self) -> bool:
        return bool(self.inserts or self.deletes or self.updates)

    def write(self, session: Session) -> None:
        """Deletes first (a moved base plan frees its slot), updates, then inserts parents
        first; on Postgres all in one round trip (call inside :func:`~syncd.db.pipeline` to
        add more writes to it)."""
        with pipeline(session):
            self.send(session)

    def send(self, session: Session) -> None:
        """:meth:`write`'s statements, in the caller's pipeline if it has one."""
        deletes, updates, inserts = self.deletes, self.updates, self.inserts
        # Taken before sending: a failed statement must not leave rows behind for the next
        # write (the per-event fallback reuses the context after rolling a savepoint back).
        self.deletes, self.updates, self.inserts = {}, {}, {}
        set_based = bulk.supported(session)  # Postgres: one statement per table, any row count
        for table, ids in deletes.items():
            session.execute(delete(table).where(one_of(session, table.c.id, ids)))
        for (table, names), rows in updates.items():
            if set_based:
                bulk.update_rows(session, table, "id", rows)
                continue
            statement = (
                update(table)
                .where(table.c.id == bindparam("row_id"))
                .values({name: bindparam(f"v_{name}") for name in names})
            )
            session.execute(statement, [{"row_id": r["id"], **{f"v_{n}": r[n] for n in names}} for r in rows])
        for table in INSERT_ORDER:
            new = inserts.get(table)
            if new and set_based:
                bulk.insert_rows(session, table, new)
            elif new:  # inline: no RETURNING of generated keys (nothing reads them; pipelines can't)
                session.execute(insert(table).inline(), new)


# JSON mode as pydantic renders it (UTC datetimes end in ``Z``).
_z_iso = bulk.LastFormatted(lambda value: value.isoformat().replace("+00:00", "Z"))


def snapshot(row: Row) -> Row:
    """The row in JSON mode (a copy; its datetimes as text): what the audit log and events hold."""
    out = dict(row)
    for key, value in row.items():
        if isinstance(value, datetime):  # a few keys a row: no call for every other value
            out[key] = _z_iso(value)
    return out


def company_row(name: str, now: datetime) -> Row:
    return {"id": new_id("comp"), "name": name, "created_at": now, "updated_at": now, "last_seen_at": None}


def plan_row(company_id: str, plan_id: str, version_id: str, now: datetime, **fields: Any) -> Row:
    """A base ``company_plan`` row; ``fields`` set the source and billing columns."""
    row: Row = {
        "id": new_id("cpln"),
        "company_id": company_id,
        "plan_id": plan_id,
        "plan_version_id": version_id,
        "role": "base",
        "source": "manual",
        "quantity": 1,
        "trial_end": None,
        "trial_status": None,
        "access_until": None,
        "stripe_subscription_id": None,
        "stripe_subscription_item_id": None,
        "stripe_price_id": None,
        "created_at": now,
        "updated_at": now,
    }
    row.update(fields)
    return row


def plan_change_row(company_id: str, action: str, actor: Actor, now: datetime, **fields: Any) -> Row:
    row: Row = {
        "id": new_id("plch"),
        "company_id": company_id,
        "action": action,
        "base_plan_action": None,
        "subscription_change_action": None,
        "actor_type": actor.actor_type,
        "actor": actor.actor,
        "previous_base_plan_id": None,
        "base_plan_id": None,
        "previous_base_plan_version_id": None,
        "base_plan_version_id": None,
        "add_ons_added": [],
        "add_ons_removed": [],
        "traits_updated": [],
        "created_at": now,
    }
    row.update(fields)
    return row


def audit_row(actor: Actor, action: str, company_id: str, before: Any, after: Any, now: datetime) -> Row:
    return {
        "actor_type": actor.actor_type,
        "actor": actor.actor,
        "action": action,
        "entity_type": "company",
        "entity_id": company_id,
        "before": before,
        "after": after,
        "note": None,
        "created_at": now,
    }
