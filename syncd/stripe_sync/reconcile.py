"""``syncd reconcile --verify | --repair``: local state against Stripe, object by object.

Verify lists every product, price, customer, subscription and schedule from Stripe and
reports (1) mirror rows that are missing, differ in a field that matters, or exist only
locally, and (2) companies whose billing-managed plans differ from what Stripe's
subscriptions grant now. Repair re-applies the listing over the mirror regardless of
watermarks, marks local-only rows deleted and re-maps every affected customer; a verify
afterwards comes back clean.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import stripe
import structlog
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from ..models import CompanyPlan, Plan, StripeCustomer, StripeSubscription, utcnow
from . import mirror
from .mapping import MappingContext, claims_from, expected_plans, sync_company
from .normalize import JSON, fingerprint, ref_id, subscription_view
from .sweep import KINDS, apply_page, list_objects, stripe_now
from .sweep_pool import SweepResult

log = structlog.get_logger(__name__)
Progress = Callable[[str, int], None]


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)
    customers: set[str] = field(default_factory=set)  # customers whose mapping differs
    local_only: dict[str, list[str]] = field(default_factory=dict)
    downgrades: list[Any] = field(default_factory=list)  # billing.reconcile.DowngradeDrift

    @property
    def clean(self) -> bool:
        return not self.lines


def _listing(client: stripe.StripeClient, kind: str, progress: Progress | None) -> Iterator[JSON]:
    for obj in list_objects(client, kind, None):
        if progress is not None:
            progress(kind, 1)
        yield obj


def verify(
    engine: Engine,
    client: stripe.StripeClient,
    *,
    now: datetime | None = None,
    past_due_grace_days: int = 0,
    on_progress: Progress | None = None,
) -> Report:
    report = Report()
    ctx = MappingContext(now=now or utcnow(), past_due_grace_days=past_due_grace_days)
    subs_by_customer: dict[str, list[JSON]] = {}
    schedules: list[JSON] = []
    with Session(engine) as session:
        for kind in KINDS:
            model: Any = mirror.MODELS[kind]
            seen: set[str] = set()
            for obj in _listing(client, kind, on_progress):
                stripe_id = str(obj["id"])
                seen.add(stripe_id)
                if kind == "subscription_schedule":
                    schedules.append(obj)
                if kind == "subscription":
                    obj = mirror.complete_items(client, obj)
                    if ref_id(obj.get("customer")):
                        subs_by_customer.setdefault(str(ref_id(obj.get("customer"))), []).append(obj)
                row = session.get(model, stripe_id)
                if row is None or (row.deleted and not obj.get("deleted")):
                    report.lines.append(f"{kind} {stripe_id}: missing locally")
                elif fingerprint(kind, row.data) != fingerprint(kind, obj):
                    report.lines.append(
                        f"{kind} {stripe_id}: differs: local {fingerprint(kind, row.data)} "
                        f"!= stripe {fingerprint(kind, obj)}"
                    )
            report.checked[kind] = len(seen)
            local = session.exec(select(model.stripe_id).where(col(model.deleted).is_(False))).all()
            extra = sorted(set(local) - seen)
            report.local_only[kind] = extra
            report.lines.extend(f"{kind} {i}: exists locally, not in Stripe" for i in extra)
        _verify_companies(session, subs_by_customer, ctx, report)
        from ..billing.reconcile import find_drift  # billing builds on the sync: import late

        report.downgrades = find_drift(session, schedules)
        report.lines.extend(d.line for d in report.downgrades)
    return report


def _verify_companies(
    session: Session, subs_by_customer: dict[str, list[JSON]], ctx: MappingContext, report: Report
) -> None:
    billed = session.exec(
        select(StripeCustomer.stripe_id)
        .join(CompanyPlan, col(CompanyPlan.company_id) == StripeCustomer.company_id)
        .where(col(CompanyPlan.source) == "billing")
    ).all()
    for customer_id in sorted(set(subs_by_customer) | set(billed)):
        mirrored = {s.stripe_id: s.past_due_since for s in _subs(session, customer_id)}
        views = [
            (subscription_view(s), mirrored.get(str(s["id"]))) for s in subs_by_customer.get(customer_id, [])
        ]
        base, add_ons = expected_plans(claims_from(session, views, ctx))
        expected = (base.plan.key if base else None, sorted(c.plan.key for c in add_ons.values()))
        actual = _actual(session, customer_id)
        if expected != actual:
            report.customers.add(customer_id)
            report.lines.append(
                f"customer {customer_id}: billing plans differ: local base={actual[0]} add-ons={actual[1]}, "
                f"stripe grants base={expected[0]} add-ons={expected[1]}"
            )


def _subs(session: Session, customer_id: str) -> list[StripeSubscription]:
    return list(
        session.exec(
            select(StripeSubscription).where(col(StripeSubscription.customer_id) == customer_id)
        ).all()
    )


def _actual(session: Session, customer_id: str) -> tuple[str | None, list[str]]:
    """(base plan key, add-on keys) the company holds from billing."""
    customer = session.get(StripeCustomer, customer_id)
    if customer is None or customer.company_id is None:
        return None, []
    rows = session.exec(
        select(CompanyPlan, Plan)
        .join(Plan, col(Plan.id) == CompanyPlan.plan_id)
        .where(col(CompanyPlan.company_id) == customer.company_id, col(CompanyPlan.source) == "billing")
    ).all()
    base = next((p.key for r, p in rows if r.role == "base"), None)
    return base, sorted(p.key for r, p in rows if r.role == "add_on")


def repair(
    engine: Engine,
    client: stripe.StripeClient,
    report: Report,
    *,
    now: datetime | None = None,
    past_due_grace_days: int = 0,
    on_progress: Progress | None = None,
) -> int:
    """Make local state match Stripe; returns the number of customers re-mapped."""
    ctx = MappingContext(now=now or utcnow(), past_due_grace_days=past_due_grace_days)
    created = stripe_now(client)
    customers: set[str] = set(report.customers)
    for kind in KINDS:
        page: list[JSON] = []
        for obj in list_objects(client, kind, None):
            page.append(obj)
            if kind == "subscription" and ref_id(obj.get("customer")):
                customers.add(str(ref_id(obj.get("customer"))))
            if len(page) >= 100:
                _force_page(engine, client, kind, page, ctx, created)
                if on_progress is not None:
                    on_progress(kind, len(page))
                page = []
        if page:
            _force_page(engine, client, kind, page, ctx, created)
            if on_progress is not None:
                on_progress(kind, len(page))
        gone = report.local_only.get(kind, [])
        if gone:
            with Session(engine) as session:
                model: Any = mirror.MODELS[kind]
                for row in session.exec(select(model).where(col(model.stripe_id).in_(gone))).all():
                    row.deleted = True
                    session.add(row)
                    if kind == "subscription" and row.customer_id:
                        customers.add(row.customer_id)
                session.commit()
    with Session(engine) as session:
        for customer_id in sorted(customers):
            sync_company(session, customer_id, ctx)
        if report.downgrades:
            from ..billing.reconcile import repair_drift

            repair_drift(session, report.downgrades, ctx)
        session.commit()
    log.info("stripe_reconcile_repaired", customers=len(customers))
    return len(customers)


def _force_page(
    engine: Engine,
    client: stripe.StripeClient,
    kind: str,
    page: list[JSON],
    ctx: MappingContext,
    created: int,
) -> None:
    """Apply a listed page over whatever the mirror holds (repair ignores watermarks)."""
    with Session(engine) as session:
        model: Any = mirror.MODELS[kind]
        ids = [str(o["id"]) for o in page]
        top = max(
            [
                created,
                *(r.source_created for r in session.exec(select(model).where(col(model.stripe_id).in_(ids)))),
            ]
        )
        apply_page(session, client, kind, page, ctx, created=top, result=SweepResult())
        session.commit()
