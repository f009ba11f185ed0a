"""Stripe subscription schedules -> local ``ScheduledDowngrade`` rows.

A schedule whose next phase moves the customer to a cheaper base plan at a future date is a
pending downgrade: it is made visible locally as one ``ScheduledDowngrade`` row keyed by
``stripe_schedule_id`` (upserted, never duplicated, whether syncd created the schedule itself
or learns of it from a webhook or the sweep). When the schedule is released, canceled, no
longer has such a phase, or the customer has moved on, the pending row is canceled; once the
phase has started and the company's base plan is the cheaper one, it is marked applied.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from ..db import one_of
from ..models import ScheduledDowngrade, StripeSubscriptionSchedule
from ..services.changes import record_event
from ..services.company_plans import _monthly_amount, company_plan_rows, published_version
from .mapping import MappingContext, PlanRef, ensure_company, resolve_price, ts
from .normalize import ref_id

LIVE = frozenset({"not_started", "active"})


@dataclass(frozen=True, slots=True)
class PhasePlan:
    plan: PlanRef
    version_id: str | None
    start: int


def _phase_base(session: Session, ctx: MappingContext, phase: dict[str, Any]) -> PhasePlan | None:
    """The base plan a phase's items pay for (the first item that maps to a plan)."""
    start = phase.get("start_date")
    if not isinstance(start, int):
        return None
    for item in phase.get("items") or []:
        if not isinstance(item, dict):
            continue
        price_id = ref_id(item.get("price")) or ref_id(item.get("plan"))
        plan, version_id = resolve_price(session, ctx, price_id, None)
        if plan is not None and plan.plan_type == "plan":
            return PhasePlan(plan, version_id, start)
    return None


def _pending_phase(
    session: Session, ctx: MappingContext, data: dict[str, Any], from_plan_id: str, from_version: str
) -> PhasePlan | None:
    """The first future phase whose base plan differs from the current one, if it is cheaper."""
    phases = [p for p in data.get("phases") or [] if isinstance(p, dict)]
    for phase in sorted(phases, key=lambda p: int(p.get("start_date") or 0)):
        if int(phase.get("start_date") or 0) <= ctx.now_ts:
            continue
        target = _phase_base(session, ctx, phase)
        if target is None or target.plan.id == from_plan_id:
            continue
        to_version = target.version_id or _published_version_id(session, target.plan.id)
        if _monthly_amount(session, to_version) < _monthly_amount(session, from_version):
            return target
        return None  # the next plan change is an upgrade or a lateral move: nothing to show
    return None


def _published_version_id(session: Session, plan_id: str) -> str | None:
    version = published_version(session, plan_id)
    return version.id if version is not None else None


def map_schedule(session: Session, row: StripeSubscriptionSchedule, ctx: MappingContext) -> bool:
    """Bring the schedule's ``ScheduledDowngrade`` row in line with it. True if anything changed."""
    existing = session.exec(
        select(ScheduledDowngrade).where(col(ScheduledDowngrade.stripe_schedule_id) == row.stripe_id)
    ).all()
    if not row.customer_id:
        return False
    company_id = ensure_company(session, row.customer_id)
    base = next((r for r in company_plan_rows(session, company_id) if r.role == "base"), None)
    data = row.data or {}
    target: PhasePlan | None = None
    if not row.deleted and data.get("status") in LIVE and base is not None:
        target = _pending_phase(session, ctx, data, base.plan_id, base.plan_version_id)
    changed = False
    keep = existing[0] if existing else None
    # Duplicates from before this mapping existed (or a concurrent writer) collapse into one.
    for extra in existing[1:]:
        if extra.status == "pending":
            extra.status = "canceled"
            session.add(extra)
            changed = True
    if target is not None and base is not None:
        effective = ts(target.start)
        assert effective is not None
        fields: dict[str, Any] = {
            "company_id": company_id,
            "from_plan_id": base.plan_id,
            "to_plan_id": target.plan.id,
            "to_plan_version_id": target.version_id,
            "effective_after": effective,
            "status": "pending",
        }
        if keep is None:
            keep = ScheduledDowngrade(stripe_schedule_id=row.stripe_id, **fields)
            changed = True
        elif any(_differs(getattr(keep, k), v) for k, v in fields.items()):
            for k, v in fields.items():
                setattr(keep, k, v)
            changed = True
    elif keep is not None and keep.status == "pending":
        reached = keep.effective_after <= ctx.now and base is not None and base.plan_id == keep.to_plan_id
        keep.status = "applied" if reached else "canceled"
        changed = True
    if not changed or keep is None:
        return changed
    session.add(keep)
    session.flush()
    record_event(
        session,
        "company.scheduled_downgrade",
        keep.company_id,
        {
            "scheduled_downgrade_id": keep.id,
            "from_plan_id": keep.from_plan_id,
            "to_plan_id": keep.to_plan_id,
            "effective_after": keep.effective_after.isoformat(),
            "status": keep.status,
            "stripe_schedule_id": row.stripe_id,
        },
    )
    return True


def _differs(current: Any, wanted: Any) -> bool:
    if isinstance(current, datetime) and isinstance(wanted, datetime):
        return current.timestamp() != wanted.timestamp()
    return bool(current != wanted)


def schedules_of(session: Session, customer_ids: list[str]) -> list[StripeSubscriptionSchedule]:
    if not customer_ids:
        return []
    return list(
        session.exec(
            select(StripeSubscriptionSchedule).where(
                one_of(session, col(StripeSubscriptionSchedule.customer_id), set(customer_ids))
            )
        ).all()
    )


def sync_schedules(session: Session, customer_id: str, ctx: MappingContext) -> None:
    """Re-judge a customer's schedules after its plans moved (a phase started, a cancel)."""
    for schedule in schedules_of(session, [customer_id]):
        map_schedule(session, schedule, ctx)
