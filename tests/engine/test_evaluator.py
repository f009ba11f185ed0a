"""Snapshots and the Evaluator: the fast path must equal the full evaluation, always."""

from __future__ import annotations

import datetime as dt
import math
import random

from freezegun import freeze_time
from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.engine.evaluator import Evaluator
from syncd.engine.flagcheck import check_flag
from syncd.engine.snapshot import build_snapshot
from syncd.engine.wire import (
    Company,
    CompanyMetric,
    Condition,
    Flag,
    Preflight,
    Rule,
    Trait,
    TraitDefinition,
    User,
)
from tests.engine.strategies import NOWS, Builder

UTC = dt.UTC


def catalog(b: Builder) -> list[Flag]:
    """Three flags; the first one's id is the one generated company/user rules point at."""
    flags = [b.flag() for _ in range(3)]
    for i, flag in enumerate(flags):
        flag.key = f"feature-{i}"
        if i:
            flag.id = f"flag_{i + 1}"
    return flags


@settings(max_examples=400, derandomize=True, deadline=None, database=None)
@given(st.randoms(use_true_random=True))
def test_snapshot_path_equals_full_evaluation(rng: random.Random) -> None:
    now = rng.choice(NOWS)
    b = Builder(rng, now)
    flags, company, user, preflight = catalog(b), b.company(), b.user(), b.preflight()
    ev = Evaluator(flags)
    ev.update_company(company, now=now)
    by_key = {f.key: f for f in flags}
    for key, flag in by_key.items():
        assert ev.check(company.id, key, now=now) == check_flag(flag, company, None, None, now)
        assert ev.check(company.id, key, user, now=now) == check_flag(flag, company, user, None, now)
        assert ev.check(company.id, key, user, preflight, now) == check_flag(
            flag, company, user, preflight, now
        )
    assert dict(ev.check_all(company.id, now=now)) == {
        k: check_flag(f, company, None, None, now) for k, f in by_key.items()
    }
    assert dict(ev.check_all(company.id, user, now=now)) == {
        k: check_flag(f, company, user, None, now) for k, f in by_key.items()
    }


def metered() -> tuple[Flag, Company]:
    cond = Condition(
        "metric", "lt", id="m", event_subtype="api", metric_value=10, metric_period="current_week"
    )
    flag = Flag("f", "api", False, [Rule("r", "plan_entitlement", True, "Pro", conditions=[cond])])
    company = Company("co", metrics=[CompanyMetric("api", "current_week", "first_of_month", 3)])
    return flag, company


def test_warm_check_is_served_from_the_snapshot() -> None:
    flag, company = metered()
    ev = Evaluator([flag])
    with freeze_time("2025-06-12T00:00:00Z"):
        snap = ev.update_company(company)
        assert ev.check("co", "api") is snap.results["api"]  # the very same object
        assert ev.check_all("co") is snap.results


def test_snapshot_expires_at_the_next_metric_reset() -> None:
    flag, company = metered()
    ev = Evaluator([flag])
    with freeze_time("2025-06-14T23:59:59Z"):  # Saturday
        snap = ev.update_company(company)
        assert snap.valid_until == dt.datetime(2025, 6, 15, tzinfo=UTC).timestamp()
        assert ev.check("co", "api").feature_usage_reset_at == dt.datetime(2025, 6, 15, tzinfo=UTC)
    with freeze_time("2025-06-15T00:00:00Z"):  # Sunday: the week rolled over
        result = ev.check("co", "api")
        assert result is not snap.results["api"]  # fell back to the full evaluation
        assert result.feature_usage_reset_at == dt.datetime(2025, 6, 22, tzinfo=UTC)
        assert ev.refresh_expired() == 1
        assert ev.check("co", "api") is ev.snapshot("co").results["api"]  # type: ignore[union-attr]
        assert ev.refresh_expired() == 0


def test_caller_boundaries_bound_validity() -> None:
    flag = Flag("f", "beta", False, [Rule("r", "standard", True, "On")])
    expiry = dt.datetime(2025, 7, 1, 12, tzinfo=UTC)
    snap = build_snapshot(Company("co"), [flag], dt.datetime(2025, 7, 1, tzinfo=UTC), [expiry])
    assert snap.valid_until == expiry.timestamp()
    assert build_snapshot(Company("co"), [flag], dt.datetime(2025, 7, 1, tzinfo=UTC)).valid_until == math.inf


def test_user_with_relevant_rules_or_traits_falls_back() -> None:
    beta = TraitDefinition("beta", "bool", "user")
    flag = Flag(
        "f",
        "k",
        False,
        [
            Rule(
                "r1",
                "standard",
                True,
                "Beta users",
                conditions=[Condition("trait", "eq", id="c", trait_definition=beta, trait_value="true")],
            ),
        ],
    )
    plain = Flag("g", "plain", True)
    ev = Evaluator([flag, plain])
    now = dt.datetime(2025, 1, 1, tzinfo=UTC)
    ev.update_company(Company("co"), now=now)
    assert ev.snapshot("co").user_sensitive == frozenset({"k"})  # type: ignore[union-attr]
    tester = User("u", traits=[Trait("true", beta)])
    assert ev.check("co", "k", now=now).value is False
    assert ev.check("co", "k", tester, now=now).value is True
    # A user rule for the flag also forces the full evaluation.
    ruled = User("u2", rules=[Rule("ur", "global_override", False, "No", flag_id="g")])
    assert ev.check("co", "plain", ruled, now=now).value is False
    # A user that cannot change anything gets the snapshot result with its id.
    other = ev.check("co", "plain", User("u3"), now=now)
    assert (other.value, other.user_id) == (True, "u3")


def test_preflight_always_takes_the_full_path() -> None:
    flag, company = metered()
    ev = Evaluator([flag])
    now = dt.datetime(2025, 6, 12, tzinfo=UTC)
    ev.update_company(company, now=now)
    assert ev.check("co", "api", now=now).value is True
    assert ev.check("co", "api", preflight=Preflight(usage=7), now=now).value is False


def test_inputs_changes_recompute() -> None:
    flag, company = metered()
    ev = Evaluator([flag])
    now = dt.datetime(2025, 6, 12, tzinfo=UTC)
    ev.update_company(company, now=now)
    used_up = Company("co", metrics=[CompanyMetric("api", "current_week", "first_of_month", 10)])
    ev.update_company(used_up, now=now)
    assert ev.check("co", "api", now=now).value is False
    ev.set_flags([Flag("f", "api", True)], now=now)
    assert ev.check("co", "api", now=now).value is True  # default of the new flag
    ev.invalidate("co")
    result = ev.check("co", "api", now=now)
    assert (result.company_id, ev.snapshot("co")) == (None, None)  # evaluated without company


def test_unknown_flag() -> None:
    result = Evaluator().check("co", "missing")
    assert (result.flag_key, result.value, result.reason) == ("missing", False, "Flag not found")
