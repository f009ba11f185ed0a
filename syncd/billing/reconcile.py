"""Scheduled downgrades against Stripe's subscription schedules (``syncd reconcile``).

Two ways they can part: a pending local row whose Stripe schedule is no longer active
(released or cancelled in the Dashboard, or our release failed half way), and an active
schedule syncd made (``syncd_origin`` metadata) with no pending row (the local commit failed
after Stripe accepted). Verify reports both; repair closes the first (applied if the company
is on the target plan, else canceled) and recreates the second from the schedule's phases.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, col, select

from ..models import CompanyPlan, ScheduledDowngrade, StripeCustomer
from ..stripe_api import METADATA_ORIGIN_KEY
from ..stripe_sync.mapping import MappingContext, resolve_price, ts
from ..stripe_sync.normalize import ref_id

LIVE = ("active", "not_started")


@dataclass(frozen=True, slots=True)
class DowngradeDrift:
    line: str
    row_id: str | None = None  # a pending row to close
    schedule: dict[str, Any] | None = None  # a schedule to record locally


def _price_id(item: Any) -> str | None:
    price = item.get("price") if isinstance(item, dict) else None
    return ref_id(price) if price is not None else None


def find_drift(session: Session, schedules: list[dict[str, Any]]) -> list[DowngradeDrift]:
    by_id = {str(s["id"]): s for s in schedules}
    drift: list[DowngradeDrift] = []
    pending = session.exec(
        select(ScheduledDowngrade).where(col(ScheduledDowngrade.status) == "pending")
    ).all()
    for row in pending:
        sched = by_id.get(row.stripe_schedule_id or "")
        if row.stripe_schedule_id and (sched is None or sched.get("status") not in LIVE):
            status = sched.get("status") if sched else "missing"
            drift.append(
                DowngradeDrift(
                    f"scheduled_downgrade {row.id}: pending locally, Stripe schedule "
                    f"{row.stripe_schedule_id} is {status}",
                    row_id=row.id,
                )
            )
    recorded = {row.stripe_schedule_id for row in pending}
    for sched in schedules:
        meta = sched.get("metadata") or {}
        if sched.get("status") in LIVE and meta.get(METADATA_ORIGIN_KEY) and str(sched["id"]) not in recorded:
            drift.append(
                DowngradeDrift(
                    f"subscription_schedule {sched['id']}: a syncd downgrade with no pending row locally",
                    schedule=sched,
                )
            )
    return drift


def repair_drift(session: Session, drift: list[DowngradeDrift], ctx: MappingContext) -> int:
    fixed = 0
    for item in drift:
        if item.row_id is not None:
            row = session.get(ScheduledDowngrade, item.row_id)
            if row is None or row.status != "pending":
                continue
            base = _base(session, row.company_id)
            row.status = "applied" if base is not None and base.plan_id == row.to_plan_id else "canceled"
            session.add(row)
            fixed += 1
        elif item.schedule is not None and _record(session, item.schedule, ctx):
            fixed += 1
    return fixed


def _base(session: Session, company_id: str) -> CompanyPlan | None:
    return session.exec(
        select(CompanyPlan).where(col(CompanyPlan.company_id) == company_id, col(CompanyPlan.role) == "base")
    ).first()


def _record(session: Session, sched: dict[str, Any], ctx: MappingContext) -> bool:
    phases = sched.get("phases") or []
    customer = session.get(StripeCustomer, ref_id(sched.get("customer")) or "")
    if len(phases) < 2 or customer is None or customer.company_id is None:
        return False
    base = _base(session, customer.company_id)
    target, version = None, None
    for item in phases[-1].get("items") or []:
        plan, version = resolve_price(session, ctx, _price_id(item), None)
        if plan is not None and plan.plan_type == "plan":
            target = plan
            break
    effective = ts(phases[0].get("end_date"))
    if base is None or target is None or effective is None:
        return False
    session.add(
        ScheduledDowngrade(
            company_id=customer.company_id,
            from_plan_id=base.plan_id,
            to_plan_id=target.id,
            to_plan_version_id=version,
            effective_after=effective,
            stripe_schedule_id=str(sched["id"]),
        )
    )
    return True
