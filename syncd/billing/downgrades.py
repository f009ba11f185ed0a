"""Scheduled downgrades: a Stripe subscription schedule whose second phase is the cheaper plan,
mirrored locally as a pending ``ScheduledDowngrade``.

Who flips the plan at the boundary: whichever comes first of (a) the boundary job
(``boundaries.apply_downgrades``, at ``effective_after``) and (b) the schedule's phase change
arriving from Stripe as ``customer.subscription.updated`` (not an echo: Stripe makes it on its
own clock, so the event carries no request). Both land on the same plan; :func:`settle` marks
the row applied when the inbound sync got there first, so it happens once.
"""

from __future__ import annotations

from typing import Any

import stripe
from sqlmodel import Session, col, select

from ..exceptions import ConflictError
from ..models import CompanyPlan, ScheduledDowngrade, StripeSubscriptionSchedule, utcnow
from ..services.audit import Actor, record, snapshot
from ..services.changes import record_event
from ..stripe_api import METADATA_ORIGIN_KEY, idempotency_key
from ..stripe_sync import mirror
from ..stripe_sync.mapping import ts
from ..stripe_sync.normalize import plain
from .errors import translate


def pending(session: Session, company_id: str) -> ScheduledDowngrade | None:
    return session.exec(
        select(ScheduledDowngrade)
        .where(col(ScheduledDowngrade.company_id) == company_id, col(ScheduledDowngrade.status) == "pending")
        .order_by(col(ScheduledDowngrade.effective_after))
    ).first()


def view(row: ScheduledDowngrade | None) -> dict[str, Any] | None:
    """``CompanyDetailResponseData.scheduled_downgrade``."""
    if row is None:
        return None
    return {
        "id": row.id,
        "from_plan_id": row.from_plan_id,
        "to_plan_id": row.to_plan_id,
        "to_plan_version_id": row.to_plan_version_id,
        "effective_after": row.effective_after,
        "stripe_schedule_id": row.stripe_schedule_id,
        "status": row.status,
    }


def _event(session: Session, row: ScheduledDowngrade) -> None:
    record_event(
        session,
        "company.scheduled_downgrade",
        row.company_id,
        {
            "scheduled_downgrade_id": row.id,
            "from_plan_id": row.from_plan_id,
            "to_plan_id": row.to_plan_id,
            "effective_after": row.effective_after.isoformat(),
            "status": row.status,
        },
    )


def schedule(
    session: Session,
    client: stripe.StripeClient,
    base: CompanyPlan,
    items: list[dict[str, Any]],
    *,
    to_plan_id: str,
    to_version_id: str,
    interval: str,
    token: str,
    actor: Actor,
) -> ScheduledDowngrade:
    """Schedule ``items`` from the end of the current period; record the pending downgrade."""
    assert base.stripe_subscription_id is not None
    sub_id = base.stripe_subscription_id
    try:
        sched = client.v1.subscription_schedules.create(
            {"from_subscription": sub_id},
            {"idempotency_key": idempotency_key("downgrade", token, "schedule")},
        )
        current = sched.phases[0]
        phases: Any = {
            "end_behavior": "release",
            "metadata": {METADATA_ORIGIN_KEY: "syncd", "syncd_company_id": base.company_id},
            "phases": [
                {
                    "items": [{"price": i.price, "quantity": i.quantity} for i in current["items"]],
                    "start_date": current.start_date,
                    "end_date": current.end_date,
                    "proration_behavior": "none",
                },
                {
                    "items": items,
                    "duration": {"interval": interval, "interval_count": 1},
                    "proration_behavior": "none",  # no credits: access runs to the period end
                },
            ],
        }
        sched = client.v1.subscription_schedules.update(
            sched.id, phases, {"idempotency_key": idempotency_key("downgrade", token, "phases")}
        )
    except stripe.StripeError as exc:
        raise translate(exc) from exc
    mirror.store(session, "subscription_schedule", plain(sched), created=0, source_id="syncd:downgrade")
    row = ScheduledDowngrade(
        company_id=base.company_id,
        from_plan_id=base.plan_id,
        to_plan_id=to_plan_id,
        to_plan_version_id=to_version_id,
        effective_after=ts(int(current.end_date)) or utcnow(),
        stripe_schedule_id=sched.id,
    )
    session.add(row)
    session.flush()
    record(session, actor, "company.downgrade_scheduled", "company", base.company_id, after=snapshot(row))
    _event(session, row)
    return row


def cancel(
    session: Session, client: stripe.StripeClient | None, row: ScheduledDowngrade, actor: Actor
) -> None:
    """Cancel a pending downgrade: release the Stripe schedule (the subscription runs on)."""
    if row.stripe_schedule_id and client is not None:
        try:
            sched = client.v1.subscription_schedules.retrieve(row.stripe_schedule_id)
            if sched.status in ("active", "not_started"):
                sched = client.v1.subscription_schedules.release(
                    row.stripe_schedule_id,
                    {},
                    {"idempotency_key": idempotency_key("downgrade", row.id, "release")},
                )
        except stripe.StripeError as exc:
            raise translate(exc) from exc
        mirror.store(session, "subscription_schedule", plain(sched), created=0, source_id="syncd:release")
    row.status = "canceled"
    session.add(row)
    session.flush()
    record(session, actor, "company.downgrade_canceled", "company", row.company_id, after=snapshot(row))
    _event(session, row)


def refuse_while_pending(session: Session, company_id: str, what: str) -> None:
    """Add-on, pay-in-advance and credit purchases wait until a pending downgrade is resolved."""
    row = pending(session, company_id)
    if row is not None:
        raise ConflictError(
            f"a downgrade is scheduled for {row.effective_after.isoformat()}: cancel it before {what}",
            code="scheduled_downgrade_pending",
            scheduled_downgrade=view(row),
        )


def settle(session: Session, company_id: str) -> int:
    """Mark pending downgrades applied once the company is on their target plan (Stripe's
    phase change reached the inbound sync before the boundary job). Returns how many."""
    base = _base(session, company_id)
    if base is None:
        return 0
    done = 0
    for row in session.exec(
        select(ScheduledDowngrade).where(
            col(ScheduledDowngrade.company_id) == company_id,
            col(ScheduledDowngrade.status) == "pending",
            col(ScheduledDowngrade.to_plan_id) == base.plan_id,
        )
    ).all():
        row.status = "applied"
        session.add(row)
        _event(session, row)
        done += 1
    return done


def schedule_ended(session: Session, schedule: StripeSubscriptionSchedule) -> int:
    """A schedule released, canceled or completed in Stripe (not by us: our own release is an
    echo) resolves its pending downgrade: applied if the company got there, else canceled."""
    if schedule.data.get("status") in ("active", "not_started") and not schedule.deleted:
        return 0
    done = 0
    for row in session.exec(
        select(ScheduledDowngrade).where(
            col(ScheduledDowngrade.stripe_schedule_id) == schedule.stripe_id,
            col(ScheduledDowngrade.status) == "pending",
        )
    ).all():
        base = _base(session, row.company_id)
        row.status = "applied" if base is not None and base.plan_id == row.to_plan_id else "canceled"
        session.add(row)
        _event(session, row)
        done += 1
    return done


def _base(session: Session, company_id: str) -> CompanyPlan | None:
    return session.exec(
        select(CompanyPlan).where(col(CompanyPlan.company_id) == company_id, col(CompanyPlan.role) == "base")
    ).first()
