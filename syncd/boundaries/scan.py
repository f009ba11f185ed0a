"""When does anything next change for any company, and which metric periods roll over.

Stored instants (override expiry, trial end, access end, scheduled downgrade, credit grant
expiry) are indexed columns, so each is one ``min()`` query. Metric period rollovers are
computed: calendar periods (UTC day, Sunday week, month) for every (period, month reset) the
catalog uses anywhere, and billing-cycle months from each subscription's anchor.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from ..engine import wire
from ..engine.periods import billing_next_reset, calendar_next_reset
from ..models import (
    CompanyOverride,
    CompanyPlan,
    Condition,
    CreditGrant,
    Plan,
    PlanEntitlement,
    ScheduledDowngrade,
    StripeSubscription,
)

Period = tuple[str, str]  # (metric period, month reset)
BILLING_MONTH: Period = ("current_month", "billing_cycle")


def _period(period: str | None, month_reset: str | None) -> Period | None:
    if period is None or period == "all_time":
        return None
    return period, month_reset or "first_of_month"


def periods_in_use(session: Session) -> set[Period]:
    """Every metered (period, month reset) an entitlement, override or condition refers to."""
    found: set[Period] = set()
    for model in (PlanEntitlement, CompanyOverride):
        rows = session.exec(select(model.metric_period, model.metric_period_month_reset).distinct()).all()
        found.update(p for r in rows if (p := _period(r[0], r[1])) is not None)
    rows = session.exec(
        select(Condition.metric_period, Condition.metric_period_month_reset)
        .where(col(Condition.condition_type) == "metric")
        .distinct()
    ).all()
    found.update(p for r in rows if (p := _period(r[0], r[1])) is not None)
    for audience in session.exec(select(Plan.audience)).all():
        for cond in audience or []:
            if cond.get("condition_type") == "metric":
                p = _period(cond.get("metric_period"), cond.get("metric_period_month_reset"))
                if p is not None:
                    found.add(p)
    return found


def _ts(value: Any) -> dt.datetime | None:
    if isinstance(value, int | float) and value > 0:
        return dt.datetime.fromtimestamp(value, dt.UTC)
    return None


def subscription_period(data: dict[str, Any]) -> tuple[dt.datetime, dt.datetime] | None:
    """The current period of a mirrored Stripe subscription (on it, or on its first item)."""
    start, end = _ts(data.get("current_period_start")), _ts(data.get("current_period_end"))
    if start is None or end is None:
        items = (data.get("items") or {}).get("data") or []
        if items:
            start, end = _ts(items[0].get("current_period_start")), _ts(items[0].get("current_period_end"))
    return None if start is None or end is None else (start, end)


def billing_subscriptions(session: Session) -> dict[str, wire.Subscription]:
    """Each company's billing subscription (the one on its base plan first), by company id."""
    rows = session.exec(
        select(
            CompanyPlan.company_id, CompanyPlan.role, StripeSubscription.stripe_id, StripeSubscription.data
        )
        .join(
            StripeSubscription, col(StripeSubscription.stripe_id) == col(CompanyPlan.stripe_subscription_id)
        )
        .order_by(col(CompanyPlan.role))  # "add_on" < "base": base rows overwrite
    ).all()
    out: dict[str, wire.Subscription] = {}
    for company_id, _role, sub_id, data in rows:
        period = subscription_period(dict(data or {}))
        if period is not None:
            out[company_id] = wire.Subscription(sub_id, *period)
    return out


def _min_after(session: Session, column: Any, now: dt.datetime, *where: Any) -> dt.datetime | None:
    value: dt.datetime | None = session.exec(select(func.min(column)).where(column > now, *where)).one()
    if value is None:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def stored_boundaries(session: Session, now: dt.datetime) -> list[dt.datetime]:
    """The next future instant of each stored kind of boundary."""
    found = [
        _min_after(session, col(CompanyOverride.expiration_date), now),
        _min_after(
            session,
            col(CompanyPlan.trial_end),
            now,
            col(CompanyPlan.source) != "billing",
            func.coalesce(col(CompanyPlan.trial_status), "active") == "active",
        ),
        _min_after(session, col(CompanyPlan.access_until), now),
        _min_after(
            session,
            col(ScheduledDowngrade.effective_after),
            now,
            col(ScheduledDowngrade.status) == "pending",
        ),
        _min_after(session, col(CreditGrant.expires_at), now, col(CreditGrant.zeroed_at).is_(None)),
    ]
    return [t for t in found if t is not None]


def rollover_boundaries(
    periods: Iterable[Period], subs: dict[str, wire.Subscription], now: dt.datetime
) -> list[dt.datetime]:
    out: list[dt.datetime] = []
    for period, month_reset in periods:
        if (period, month_reset) == BILLING_MONTH:
            out.extend(billing_next_reset(sub, now) for sub in subs.values())
            out.append(billing_next_reset(None, now))  # companies without a subscription
        elif (reset := calendar_next_reset(period, now)) is not None:
            out.append(reset)
    return [t for t in out if t > now]


def next_boundary(session: Session, now: dt.datetime) -> dt.datetime | None:
    """The next instant after ``now`` at which anything changes for any company."""
    periods = periods_in_use(session)
    subs = billing_subscriptions(session) if BILLING_MONTH in periods else {}
    candidates = [*stored_boundaries(session, now), *rollover_boundaries(periods, subs, now)]
    return min(candidates, default=None)
