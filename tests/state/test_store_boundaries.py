"""The engine over the database: every time boundary, with freezegun, on SQLite and Postgres.

Each test builds state through the services (as the API would), then moves the frozen clock
across a boundary and checks that the very next answer reflects it, with no write in between.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from freezegun import freeze_time
from freezegun.api import FrozenDateTimeFactory
from sqlmodel import Session

from syncd import migrate
from syncd.catalog import apply_catalog, loads
from syncd.db import make_engine, session_scope
from syncd.engine.wire import CheckFlagResult
from syncd.models import CompanyPlan, StripeSubscription
from syncd.services import companies, company_plans, overrides
from syncd.services.changes import entitlements_changed
from syncd.services.inputs import EntitlementValue
from syncd.services.metering import TrackInput, track_events
from syncd.state import EntitlementStore

UTC = dt.UTC
CATALOG = """
[settings]
initial_plan = "base"
fallback_plan = "base"
trial_expiry_plan = "base"

[traits]
seats_used = { entity = "company", type = "number" }

[[features]]
key = "daily"
name = "Daily"
type = "event"
event = "day-call"

[[features]]
key = "weekly"
name = "Weekly"
type = "event"
event = "week-call"

[[features]]
key = "monthly"
name = "Monthly"
type = "event"
event = "month-call"

[[features]]
key = "billing"
name = "Billing month"
type = "event"
event = "bill-call"

[[features]]
key = "sso"
name = "SSO"
type = "boolean"

[[plans]]
key = "base"
name = "Base"
type = "plan"

[plans.entitlements]
daily = { type = "numeric", value = 10, period = "current_day" }
weekly = { type = "numeric", value = 10, period = "current_week" }
monthly = { type = "numeric", value = 10, period = "current_month" }
billing = { type = "numeric", value = 10, period = "current_month", month_reset = "billing_cycle" }

[[plans]]
key = "premium"
name = "Premium"
type = "plan"

[plans.prices]
month = 9900

[plans.entitlements]
daily = { type = "numeric", value = 100, period = "current_day" }
sso = { type = "boolean", value = true }
"""

START = dt.datetime(2026, 1, 31, 23, 59, 0, tzinfo=UTC)  # a Saturday, last minute of January


@pytest.fixture
def frozen() -> Iterator[FrozenDateTimeFactory]:
    with freeze_time(START) as clock:
        yield clock


@pytest.fixture
def store(database_url: str, frozen: FrozenDateTimeFactory) -> Iterator[EntitlementStore]:
    engine = make_engine(database_url)
    migrate.upgrade(engine)
    with session_scope(engine) as session:
        apply_catalog(session, loads(CATALOG))
    store = EntitlementStore(engine)
    store.load()
    yield store
    engine.dispose()


def _session(store: EntitlementStore) -> Session:
    return Session(store._engine, expire_on_commit=False)


def _new_company(store: EntitlementStore, name: str = "acme") -> str:
    with _session(store) as session:
        company, _ = companies.upsert_company(session, keys={"slug": name})
        session.commit()
    store.follow()
    return company.id


def _track(store: EntitlementStore, cid: str, event: str, qty: int) -> None:
    now = dt.datetime.now(UTC)
    with _session(store) as session:
        sub = store.company(cid)
        track_events(
            session, [TrackInput(cid, event, qty, now)], {cid: sub.subscription if sub else None}, now
        )
        session.commit()
    store.follow()


def _check(store: EntitlementStore, flag: str, name: str = "acme") -> CheckFlagResult:
    return store.check({"slug": name}, None, flag)


def _usage(store: EntitlementStore, flag: str, name: str = "acme") -> int | None:
    ent = _check(store, flag, name).entitlement
    assert ent is not None
    return ent.usage


def test_day_week_and_month_counters_roll_over_at_the_instant(
    store: EntitlementStore, frozen: FrozenDateTimeFactory
) -> None:
    cid = _new_company(store)
    for event in ("day-call", "week-call", "month-call"):
        _track(store, cid, event, 10)
    assert [_check(store, f).value for f in ("daily", "weekly", "monthly")] == [False, False, False]
    frozen.move_to(dt.datetime(2026, 2, 1, 0, 0, 0, tzinfo=UTC))  # a Sunday: day, week and month reset
    assert [_usage(store, f) for f in ("daily", "weekly", "monthly")] == [0, 0, 0]
    assert [_check(store, f).value for f in ("daily", "weekly", "monthly")] == [True, True, True]


def test_week_does_not_reset_before_sunday(store: EntitlementStore, frozen: FrozenDateTimeFactory) -> None:
    frozen.move_to(dt.datetime(2026, 2, 2, 12, 0, tzinfo=UTC))  # Monday
    cid = _new_company(store)
    _track(store, cid, "week-call", 4)
    frozen.move_to(dt.datetime(2026, 2, 7, 23, 59, 59, tzinfo=UTC))  # Saturday night
    assert _usage(store, "weekly") == 4
    frozen.move_to(dt.datetime(2026, 2, 8, 0, 0, 0, tzinfo=UTC))  # Sunday 00:00 UTC
    assert _usage(store, "weekly") == 0


def test_billing_cycle_anchor_on_the_31st_clamps_to_short_months(
    store: EntitlementStore, frozen: FrozenDateTimeFactory
) -> None:
    cid = _new_company(store)
    anchor = dt.datetime(2026, 1, 31, 12, 0, tzinfo=UTC)
    with _session(store) as session:
        session.add(
            StripeSubscription(
                stripe_id="sub_anchor",
                data={
                    "current_period_start": int(anchor.timestamp()),
                    "current_period_end": int(dt.datetime(2026, 12, 31, 12, tzinfo=UTC).timestamp()),
                },
            )
        )
        row = session.get(CompanyPlan, company_plans.company_plan_rows(session, cid)[0].id)
        assert row is not None
        row.stripe_subscription_id = "sub_anchor"
        session.add(row)
        entitlements_changed(session, [cid])
        session.commit()
    store.follow()
    frozen.move_to(dt.datetime(2026, 2, 27, 9, 0, tzinfo=UTC))
    _track(store, cid, "bill-call", 7)
    assert _usage(store, "billing") == 7
    # February has no 31st: the billing month resets on its last day at the anchor's time.
    frozen.move_to(dt.datetime(2026, 2, 28, 11, 59, 59, tzinfo=UTC))
    assert _usage(store, "billing") == 7
    frozen.move_to(dt.datetime(2026, 2, 28, 12, 0, 0, tzinfo=UTC))
    assert _usage(store, "billing") == 0


def test_override_expiry_takes_effect_at_the_instant(
    store: EntitlementStore, frozen: FrozenDateTimeFactory
) -> None:
    cid = _new_company(store)
    assert store.view is not None
    feature_id = next(f.id for f in store.view.features.values() if f.key == "sso")
    expires = START + dt.timedelta(hours=2)
    with _session(store) as session:
        overrides.create_company_override(
            session,
            company_id=cid,
            feature_id=feature_id,
            value=EntitlementValue(value_type="boolean", value_bool=True),
            expiration_date=expires,
        )
        session.commit()
    store.follow()
    assert (_check(store, "sso").value, _check(store, "sso").rule_type) == (True, "company_override")
    frozen.move_to(expires - dt.timedelta(seconds=1))
    assert _check(store, "sso").value is True
    frozen.move_to(expires)
    assert _check(store, "sso").value is False
    assert store.refresh_expired() == 0  # already reloaded on the request path


def test_trial_end_moves_to_the_trial_expiry_plan(
    store: EntitlementStore, frozen: FrozenDateTimeFactory
) -> None:
    cid = _new_company(store)
    premium = next(p for p, n in store.view.plan_names.items() if n == "Premium")  # type: ignore[union-attr]
    trial_end = START + dt.timedelta(days=14)
    with _session(store) as session:
        company_plans.update_company_plans(session, cid, base_plan_id=premium, add_on_ids=[])
        row = next(r for r in company_plans.company_plan_rows(session, cid) if r.role == "base")
        row.trial_end, row.trial_status = trial_end, "active"
        session.add(row)
        session.commit()
    store.follow()
    assert _check(store, "sso").value is True
    frozen.move_to(trial_end)
    assert store.refresh_expired() == 1  # the timer path: reloaded without any request
    assert _check(store, "sso").value is False
    company = store.company(cid)
    assert company is not None and company.base_plan_id != premium


def test_access_until_falls_back_and_usage_survives_plan_changes(
    store: EntitlementStore, frozen: FrozenDateTimeFactory
) -> None:
    cid = _new_company(store)
    _track(store, cid, "day-call", 8)
    premium = next(p for p, n in store.view.plan_names.items() if n == "Premium")  # type: ignore[union-attr]
    with _session(store) as session:
        company_plans.update_company_plans(session, cid, base_plan_id=premium, add_on_ids=[])
        session.commit()
    store.follow()
    result = _check(store, "daily")
    assert result.entitlement is not None
    assert (result.entitlement.usage, result.entitlement.allocation) == (8, 100)  # usage preserved
    with _session(store) as session:
        row = next(r for r in company_plans.company_plan_rows(session, cid) if r.role == "base")
        row.access_until = START + dt.timedelta(seconds=30)  # cancel at period end
        session.add(row)
        entitlements_changed(session, [cid])
        session.commit()
    store.follow()
    assert _check(store, "sso").value is True
    frozen.move_to(START + dt.timedelta(seconds=30))
    assert _check(store, "sso").value is False
    result = _check(store, "daily")
    assert result.entitlement is not None and result.entitlement.allocation == 10  # the fallback plan


def test_other_process_changes_arrive_through_the_change_log(store: EntitlementStore) -> None:
    cid = _new_company(store)
    other = EntitlementStore(store._engine)
    other.load()
    _track(store, cid, "day-call", 10)  # written by "this" process
    assert other.check({"slug": "acme"}, None, "daily").value is True  # other has not followed yet
    assert other.follow() >= 1
    assert other.check({"slug": "acme"}, None, "daily").value is False


@pytest.mark.parametrize(("migration", "allocation"), [("immediate", 200), ("leave", 100)])
def test_publishing_a_plan_version_reaches_moved_companies_only(
    store: EntitlementStore, migration: str, allocation: int
) -> None:
    cid = _new_company(store)
    premium = next(p for p, n in store.view.plan_names.items() if n == "Premium")  # type: ignore[union-attr]
    with _session(store) as session:
        company_plans.update_company_plans(session, cid, base_plan_id=premium, add_on_ids=[])
        session.commit()
    store.follow()
    published = CATALOG.replace(
        'daily = { type = "numeric", value = 100, period = "current_day" }',
        'daily = { type = "numeric", value = 200, period = "current_day" }',
    ).replace(
        'key = "premium"\nname = "Premium"', f'key = "premium"\nname = "Premium"\nmigration = "{migration}"'
    )
    with _session(store) as session:
        apply_catalog(session, loads(published))
        session.commit()
    assert store.follow() >= 1
    result = _check(store, "daily")
    assert result.entitlement is not None and result.entitlement.allocation == allocation


def test_companies_excluded_from_an_immediate_migration_keep_their_version(store: EntitlementStore) -> None:
    moved, kept = _new_company(store, "moved"), _new_company(store, "kept")
    premium = next(p for p, n in store.view.plan_names.items() if n == "Premium")  # type: ignore[union-attr]
    with _session(store) as session:
        for cid in (moved, kept):
            company_plans.update_company_plans(session, cid, base_plan_id=premium, add_on_ids=[])
        session.commit()
    store.follow()
    published = CATALOG.replace(
        'daily = { type = "numeric", value = 100, period = "current_day" }',
        'daily = { type = "numeric", value = 200, period = "current_day" }',
    ).replace(
        'key = "premium"\nname = "Premium"',
        f'key = "premium"\nname = "Premium"\nmigration = "immediate"\nmigration_exclude = ["{kept}"]',
    )
    with _session(store) as session:
        diff = apply_catalog(session, loads(published))
        session.commit()
    assert [m.company_ids for m in diff.migrations] == [(moved,)]
    store.follow()
    allocations = {}
    for name in ("moved", "kept"):
        ent = _check(store, "daily", name).entitlement
        assert ent is not None
        allocations[name] = ent.allocation
    assert allocations == {"moved": 200, "kept": 100}
