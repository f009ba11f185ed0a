"""Every boundary type: found as the next instant, applied once at it, published through change_log."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from freezegun import freeze_time
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from syncd.boundaries import apply_due, next_boundary
from syncd.db import session_scope
from syncd.models import (
    CatalogSettingsRow,
    CompanyOverride,
    CreditGrant,
    CreditLedgerEntry,
    CreditType,
    Feature,
    PlanEntitlement,
    ScheduledDowngrade,
)

from .conftest import add_company, add_plan, assign, log_rows, plans_of

T = datetime(2031, 3, 14, 15, 9, 26, tzinfo=UTC)  # a Friday afternoon: no calendar boundary near


def _next(engine: Engine, now: datetime) -> datetime | None:
    with Session(engine) as session:
        return next_boundary(session, now)


def _topics(engine: Engine, since: int = 0) -> list[tuple[str, str | None]]:
    return [(topic, cid) for topic, cid, _, _ in log_rows(engine)[since:]]


def _applied_twice(engine: Engine, at: datetime) -> list[tuple[str, str | None]]:
    """Apply at ``at`` and again a second later: the rerun must add nothing."""
    with freeze_time(at):
        apply_due(engine, at)
    first = _topics(engine)
    with freeze_time(at + timedelta(seconds=1)):
        apply_due(engine, at + timedelta(seconds=1))
    assert _topics(engine) == first, "re-running a transition changed something"
    return first


def _feature(engine: Engine, key: str = "seats") -> str:
    with session_scope(engine) as session:
        feature = Feature(key=key, name=key, feature_type="event", event_subtype=key)
        session.add(feature)
        session.flush()
        return feature.id


def test_override_expiry(engine: Engine) -> None:
    cid = add_company(engine)
    feature = _feature(engine)
    with session_scope(engine) as session:
        session.add(
            CompanyOverride(
                company_id=cid, feature_id=feature, value_type="boolean", value_bool=True, expiration_date=T
            )
        )
    assert _next(engine, T - timedelta(hours=1)) == T
    with freeze_time(T - timedelta(seconds=1)):
        assert not apply_due(engine, T - timedelta(seconds=1))
    assert log_rows(engine) == []
    topics = _applied_twice(engine, T)
    assert topics == [("company.override.expired", cid), ("entitlements.changed", cid)]
    with Session(engine) as session:
        assert session.exec(select(CompanyOverride)).one().expiration_date == T  # the row is kept
    assert _next(engine, T) is None


def test_trial_end_moves_to_the_trial_expiry_plan(engine: Engine) -> None:
    trial = add_plan(engine, "pro")
    free = add_plan(engine, "free")
    with session_scope(engine) as session:
        session.add(CatalogSettingsRow(trial_expiry_plan_id=free[0]))
    cid = add_company(engine)
    assign(engine, cid, trial, trial_end=T, trial_status="active")
    billed = add_company(engine, "Billed")
    assign(engine, billed, trial, source="billing", trial_end=T, trial_status="active")
    assert _next(engine, T - timedelta(days=1)) == T
    topics = _applied_twice(engine, T)
    assert ("subscription.trial.ended", cid) in topics
    assert ("company.plan_changed", cid) in topics
    assert ("entitlements.changed", cid) in topics
    assert all(c == cid for _, c in topics)  # Stripe ends the billing-driven trial, not us
    assert plans_of(engine, cid) == {free[0]: ("base", "trial_expiry")}
    [ended] = [p for t, c, p, _ in log_rows(engine) if t == "subscription.trial.ended"]
    assert ended["plan_id"] == trial[0]


def test_access_until_removes_the_assignment(engine: Engine) -> None:
    pro = add_plan(engine, "pro")
    addon = add_plan(engine, "boost", plan_type="add_on")
    cid = add_company(engine)
    assign(engine, cid, pro)
    assign(engine, cid, addon, role="add_on", access_until=T)
    assert _next(engine, T - timedelta(minutes=5)) == T
    topics = _applied_twice(engine, T)
    assert ("company.plan_changed", cid) in topics and ("entitlements.changed", cid) in topics
    assert plans_of(engine, cid) == {pro[0]: ("base", "manual")}
    [changed] = [p for t, _, p, _ in log_rows(engine) if t == "company.plan_changed"]
    assert changed["add_ons_removed"] == [addon[0]] and changed["reason"] == "access_ended"


def test_scheduled_downgrade_is_applied(engine: Engine) -> None:
    pro = add_plan(engine, "pro")
    free = add_plan(engine, "free")
    cid = add_company(engine)
    assign(engine, cid, pro)
    with session_scope(engine) as session:
        session.add(
            ScheduledDowngrade(company_id=cid, from_plan_id=pro[0], to_plan_id=free[0], effective_after=T)
        )
    assert _next(engine, T - timedelta(days=3)) == T
    topics = _applied_twice(engine, T)
    assert ("company.scheduled_downgrade", cid) in topics and ("company.plan_changed", cid) in topics
    assert plans_of(engine, cid) == {free[0]: ("base", "manual")}
    with Session(engine) as session:
        assert session.exec(select(ScheduledDowngrade)).one().status == "applied"


def test_credit_grant_expiry_zeroes_the_grant_in_the_ledger(engine: Engine) -> None:
    cid = add_company(engine)
    with session_scope(engine) as session:
        credit = CreditType(key="tokens", name="Tokens")
        session.add(credit)
        session.flush()
        session.add(
            CreditGrant(
                company_id=cid,
                credit_type_id=credit.id,
                reason="purchased",
                amount=100,
                remaining=40,
                expires_at=T,
            )
        )
    assert _next(engine, T - timedelta(seconds=10)) == T
    topics = _applied_twice(engine, T)
    assert topics == [("company.credit_grant.expired", cid), ("entitlements.changed", cid)]
    with Session(engine) as session:
        grant = session.exec(select(CreditGrant)).one()
        assert grant.remaining == 0 and grant.zeroed_at == T
        [entry] = session.exec(select(CreditLedgerEntry)).all()
        assert entry.amount == -40 and entry.reason == "expired"


def test_metric_period_rollover_republishes_metered_companies(engine: Engine) -> None:
    metered = add_plan(engine, "metered")
    other = add_plan(engine, "other")
    feature = _feature(engine, "api_calls")
    with session_scope(engine) as session:
        session.add(
            PlanEntitlement(
                plan_id=metered[0],
                plan_version_id=metered[1],
                feature_id=feature,
                value_type="numeric",
                value_numeric=10,
                metric_period="current_day",
            )
        )
    cid = add_company(engine)
    assign(engine, cid, metered)
    unmetered = add_company(engine, "Other")
    assign(engine, unmetered, other)
    midnight = datetime(2031, 3, 15, tzinfo=UTC)
    with freeze_time(T):
        apply_due(engine, T)  # the first pass starts following rollovers from here
    assert _next(engine, T) == midnight
    with freeze_time(midnight - timedelta(microseconds=1)):
        assert not apply_due(engine, midnight - timedelta(microseconds=1))
    assert _applied_twice(engine, midnight) == [("entitlements.changed", cid)]
    assert _next(engine, midnight) == midnight + timedelta(days=1)


def test_billing_cycle_rollover_follows_the_subscription_anchor(engine: Engine) -> None:
    from syncd.models import StripeSubscription

    plan = add_plan(engine, "metered")
    feature = _feature(engine, "api_calls")
    with session_scope(engine) as session:
        session.add(
            PlanEntitlement(
                plan_id=plan[0],
                plan_version_id=plan[1],
                feature_id=feature,
                value_type="numeric",
                value_numeric=10,
                metric_period="current_month",
                metric_period_month_reset="billing_cycle",
            )
        )
        anchor = datetime(2031, 2, 20, 8, 30, tzinfo=UTC)
        end = datetime(2032, 2, 20, 8, 30, tzinfo=UTC)  # yearly: resets monthly on the 20th
        session.add(
            StripeSubscription(
                stripe_id="sub_1",
                data={
                    "current_period_start": int(anchor.timestamp()),
                    "current_period_end": int(end.timestamp()),
                },
            )
        )
    cid = add_company(engine)
    assign(engine, cid, plan, source="billing", stripe_subscription_id="sub_1")
    with freeze_time(T):
        apply_due(engine, T)
    reset = datetime(2031, 3, 20, 8, 30, tzinfo=UTC)
    assert _next(engine, T) == reset
    assert _applied_twice(engine, reset) == [("entitlements.changed", cid)]


def test_audience_metric_condition_period_counts_as_a_boundary(engine: Engine) -> None:
    add_plan(
        engine,
        "busy",
        audience=[
            {
                "id": "cond_1",
                "condition_type": "metric",
                "operator": "gte",
                "resource_ids": [],
                "trait_value": "",
                "event_subtype": "api_calls",
                "metric_value": 100,
                "metric_period": "current_week",
            }
        ],
    )
    # 2031-03-14 is a Friday: the week (Sunday 00:00 UTC) resets on the 16th.
    assert _next(engine, T) == datetime(2031, 3, 16, tzinfo=UTC)


def test_downgrade_is_canceled_when_the_company_moved_on(engine: Engine) -> None:
    pro = add_plan(engine, "pro")
    free = add_plan(engine, "free")
    team = add_plan(engine, "team")
    cid = add_company(engine)
    assign(engine, cid, team)
    with session_scope(engine) as session:
        session.add(
            ScheduledDowngrade(company_id=cid, from_plan_id=pro[0], to_plan_id=free[0], effective_after=T)
        )
    _applied_twice(engine, T)
    assert plans_of(engine, cid) == {team[0]: ("base", "manual")}
    with Session(engine) as session:
        assert session.exec(
            select(ScheduledDowngrade).where(col(ScheduledDowngrade.company_id) == cid)
        ).one().status == ("canceled")
