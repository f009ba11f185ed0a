"""Credit grants: burn order, one-grant-per-consumption draws, refunds, resets and rollover."""

from __future__ import annotations

import datetime as dt

import pytest
from freezegun import freeze_time

from syncd.engine.credits import (
    CreditGrant,
    LedgerEntry,
    PlanCreditConfig,
    balance,
    burn_order,
    consume,
    issue_plan_grant,
    next_grant_reset,
    one_time_expiry,
)

UTC = dt.UTC
T0 = dt.datetime(2025, 1, 1, tzinfo=UTC)
NOW = dt.datetime(2025, 3, 1, tzinfo=UTC)


def grant(gid: str, reason: str, amount: float, days: int, expires: int | None = None) -> CreditGrant:
    return CreditGrant(
        gid,
        "co",
        "cr",
        reason,
        amount,
        T0 + dt.timedelta(days=days),
        None if expires is None else T0 + dt.timedelta(days=expires),
    )


GRANTS = [
    grant("bundle_old", "purchased", 10, 1, expires=200),
    grant("plan_new", "plan", 10, 20, expires=120),
    grant("plan_old", "plan", 10, 5, expires=90),
    grant("bundle_new", "purchased", 10, 30, expires=100),
    grant("roll", "rollover", 3, 40, expires=95),
    grant("adj", "adjustment", 2, 50, expires=400),
]


@pytest.mark.parametrize(
    ("strategy", "order"),
    [
        (
            "plan_first_then_credit_bundles_first_in_first_out",
            ["adj", "roll", "plan_old", "plan_new", "bundle_old", "bundle_new"],
        ),
        ("first_in_first_out", ["adj", "roll", "bundle_old", "plan_old", "plan_new", "bundle_new"]),
        ("last_in_first_out", ["adj", "roll", "bundle_new", "plan_new", "plan_old", "bundle_old"]),
        ("expiration_priority", ["adj", "roll", "plan_old", "bundle_new", "plan_new", "bundle_old"]),
    ],
)
def test_burn_order_adjustment_and_rollover_always_first(strategy: str, order: list[str]) -> None:
    assert [g.id for g in burn_order(GRANTS, NOW, strategy)] == order


def test_burn_order_skips_expired_and_future_grants() -> None:
    grants = [grant("gone", "plan", 5, 0, expires=10), grant("later", "plan", 5, 400)]
    assert burn_order(grants, NOW) == []


def test_unknown_strategy_is_rejected() -> None:
    with pytest.raises(ValueError, match="burn strategy"):
        burn_order(GRANTS, NOW, "random")


def test_each_consumption_draws_its_full_amount_from_one_grant() -> None:
    grants = [grant("a", "plan", 5, 1), grant("b", "plan", 5, 2)]
    grants, ledger = consume(grants, "co", "cr", 4, NOW)
    assert ledger == [LedgerEntry("co", "cr", "a", 4, "track", NOW)]
    # 3 more: all of it from "a" (it still has 1), which is overdrawn to -2 ...
    grants, ledger = consume(grants, "co", "cr", 3, NOW)
    assert ledger[0].grant_id == "a" and grants[0].balance == -2
    # ... and the next consumption moves on to "b".
    grants, ledger = consume(grants, "co", "cr", 1, NOW)
    assert ledger[0].grant_id == "b" and grants[1].balance == 4
    assert balance(grants, NOW, "cr").remaining == 2  # exact: 10 - 8


def test_consumption_rate_and_unfunded_usage() -> None:
    grants, ledger = consume([grant("a", "plan", 5, 1)], "co", "cr", 2, NOW, consumption_rate=2.5)
    assert ledger[0].amount == 5 and grants[0].balance == 0
    grants, ledger = consume(grants, "co", "cr", 1, NOW)
    assert ledger == [LedgerEntry("co", "cr", None, 1, "track", NOW)]  # recorded in full


def test_inputs_are_not_mutated() -> None:
    original = [grant("a", "plan", 5, 1)]
    consume(original, "co", "cr", 3, NOW)
    assert original[0].remaining is None


def test_negative_quantity_becomes_an_adjustment_grant() -> None:
    with freeze_time("2025-03-01T00:00:00Z"):
        now = dt.datetime.now(UTC)
        grants, ledger = consume([grant("a", "plan", 5, 1)], "co", "cr", -2, now, consumption_rate=3)
    adj = grants[-1]
    assert (adj.reason, adj.amount, adj.expires_at) == ("adjustment", 6, now + dt.timedelta(days=365))
    assert ledger == [LedgerEntry("co", "cr", adj.id, -6, "adjustment", now)]
    # A second refund accumulates into the same grant and renews its rolling expiry.
    later = now + dt.timedelta(days=30)
    grants, _ = consume(grants, "co", "cr", -1, later)
    assert len([g for g in grants if g.reason == "adjustment"]) == 1
    assert grants[-1].balance == 7 and grants[-1].expires_at == later + dt.timedelta(days=365)
    # Adjustments burn first.
    grants, ledger = consume(grants, "co", "cr", 1, later)
    assert ledger[0].grant_id == adj.id


def test_balance_at_an_instant_excludes_expired_grants() -> None:
    grants = [grant("a", "plan", 5, 0, expires=59), grant("b", "purchased", 7, 0)]
    with freeze_time("2025-02-28T23:59:59Z"):
        assert balance(grants, dt.datetime.now(UTC), "cr").remaining == 12
    with freeze_time("2025-03-01T00:00:00Z"):
        assert balance(grants, dt.datetime.now(UTC), "cr").remaining == 7


MONTHLY = PlanCreditConfig("cr", 100, reset_cadence="monthly", rollover_percentage=50)


def test_plan_grant_resets_on_billing_anchor_with_clamping() -> None:
    anchor = dt.datetime(2025, 1, 31, 10, tzinfo=UTC)
    with freeze_time("2025-02-15T00:00:00Z"):
        assert next_grant_reset(MONTHLY, anchor, dt.datetime.now(UTC)) == dt.datetime(
            2025, 2, 28, 10, tzinfo=UTC
        )
    with freeze_time("2025-02-28T10:00:00Z"):
        assert next_grant_reset(MONTHLY, anchor, dt.datetime.now(UTC)) == dt.datetime(
            2025, 3, 31, 10, tzinfo=UTC
        )


def test_plan_grant_cadences() -> None:
    anchor = dt.datetime(2025, 1, 15, 9, tzinfo=UTC)
    now = dt.datetime(2025, 3, 20, tzinfo=UTC)
    daily = PlanCreditConfig("cr", 1, reset_cadence="daily")
    weekly = PlanCreditConfig("cr", 1, reset_cadence="weekly")
    quarterly = PlanCreditConfig("cr", 1, reset_cadence="quarterly")
    calendar = PlanCreditConfig("cr", 1, reset_start="first_of_month")
    assert next_grant_reset(daily, anchor, now) == dt.datetime(2025, 3, 20, 9, tzinfo=UTC)
    assert next_grant_reset(weekly, anchor, now) == dt.datetime(2025, 3, 26, 9, tzinfo=UTC)
    assert next_grant_reset(quarterly, anchor, now) == dt.datetime(2025, 4, 15, 9, tzinfo=UTC)
    assert next_grant_reset(calendar, anchor, now) == dt.datetime(2025, 4, 1, tzinfo=UTC)
    assert next_grant_reset(PlanCreditConfig("cr", 1, reset_type="no_reset"), anchor, now) is None


def test_reset_issues_plan_grant_and_rollover_expiring_at_next_reset() -> None:
    anchor = dt.datetime(2025, 1, 1, tzinfo=UTC)
    with freeze_time("2025-02-01T00:00:00Z"):
        now = dt.datetime.now(UTC)
        previous = CreditGrant("g1", "co", "cr", "plan", 100, anchor, now, remaining=30)
        grants, ledger = issue_plan_grant(MONTHLY, "co", "g2", anchor, now, previous)
    plan, roll = grants
    assert (plan.reason, plan.amount, plan.expires_at) == ("plan", 100, dt.datetime(2025, 3, 1, tzinfo=UTC))
    assert (roll.reason, roll.amount, roll.source_grant_id) == ("rollover", 15, "g1")
    assert roll.expires_at == plan.expires_at  # rolled-over credits expire at the next reset
    assert [e.amount for e in ledger] == [-100, -15]
    # Rollover burns before the fresh plan grant.
    assert [g.id for g in burn_order(grants, now)] == ["g2_rollover", "g2"]


def test_no_rollover_for_daily_cadence() -> None:
    daily = PlanCreditConfig("cr", 10, reset_cadence="daily", rollover_percentage=100)
    prev = CreditGrant("g1", "co", "cr", "plan", 10, T0, NOW, remaining=10)
    grants, _ = issue_plan_grant(daily, "co", "g2", T0, NOW, prev)
    assert [g.reason for g in grants] == ["plan"]


def test_one_time_expiry() -> None:
    end = dt.datetime(2025, 3, 31, tzinfo=UTC)
    month = dt.timedelta(days=30)
    assert one_time_expiry("no_expiry", NOW) is None
    assert one_time_expiry("duration", NOW, count=10) == NOW + dt.timedelta(days=10)
    assert (
        one_time_expiry("duration", NOW, unit="billing_periods", count=2, billing_period_length=month)
        == NOW + 2 * month
    )
    assert one_time_expiry("end_of_billing_period", NOW, billing_period_end=end) == end
    assert (
        one_time_expiry(
            "end_of_next_billing_period", NOW, billing_period_end=end, billing_period_length=month
        )
        == end + month
    )
    assert one_time_expiry("end_of_trial", NOW, trial_end=end) == end
    with pytest.raises(ValueError, match="expiry_type"):
        one_time_expiry("never", NOW)
