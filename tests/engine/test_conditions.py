"""Condition semantics not covered elsewhere: credit and metric preflight precedence, scopes."""

from __future__ import annotations

import datetime as dt

import pytest

from syncd.engine.conditions import condition_matches, find_metric
from syncd.engine.flagcheck import check_flag
from syncd.engine.wire import (
    Company,
    CompanyMetric,
    Condition,
    EventUsage,
    Flag,
    Preflight,
    Rule,
    Trait,
    TraitDefinition,
    User,
)
from tests.engine._wasm import WasmOracle

NOW = dt.datetime(2025, 5, 5, tzinfo=dt.UTC)
CREDIT = Condition("credit", "eq", id="c", credit_id="cr", consumption_rate=2.0, event_subtype="api")
RICH = Company("co", credit_balances={"cr": 10.0})


def both(
    wasm: WasmOracle,
    cond: Condition,
    company: Company | None,
    user: User | None = None,
    pf: Preflight | None = None,
) -> bool:
    flag = Flag("f", "k", False, [Rule("r", "standard", True, "R", conditions=[cond])])
    ours = check_flag(flag, company, user, pf, NOW).value
    theirs = wasm.check(flag, company, user, pf, NOW)
    assert theirs is not None and theirs["value"] == ours
    return ours


@pytest.mark.parametrize(
    ("pf", "expected"),
    [
        (None, True),  # can afford one unit at rate 2
        (Preflight(usage=5), True),  # 5 x 2 = 10 <= 10
        (Preflight(usage=6), False),  # 12 > 10
        (Preflight(usage=6, event_usage=EventUsage("api", 1)), True),  # event usage beats usage
        (Preflight(usage=1, event_usage=EventUsage("api", 6)), False),
        (Preflight(usage=6, event_usage=EventUsage("other", 1)), False),  # other event: usage applies
        (Preflight(usage=6, event_usage=EventUsage("api", 0)), False),  # zero quantity: usage applies
        (Preflight(usage=6, credit_cost={"cr": 10.0}), True),  # credit_cost beats everything
        (Preflight(event_usage=EventUsage("api", 1), credit_cost={"cr": 11.0}), False),
        (Preflight(usage=6, credit_cost={"other": 1.0}), False),  # another credit's cost is ignored
    ],
)
def test_credit_precedence(wasm: WasmOracle, pf: Preflight | None, expected: bool) -> None:
    assert both(wasm, CREDIT, RICH, pf=pf) is expected


def test_metric_preflight_event_usage_then_usage(wasm: WasmOracle) -> None:
    company = Company("co", metrics=[CompanyMetric("api", "current_month", "first_of_month", 8)])
    cond = Condition(
        "metric", "lt", id="m", event_subtype="api", metric_value=10, metric_period="current_month"
    )
    assert both(wasm, cond, company)
    assert not both(wasm, cond, company, pf=Preflight(usage=2))
    assert both(wasm, cond, company, pf=Preflight(usage=5, event_usage=EventUsage("api", 1)))
    assert not both(wasm, cond, company, pf=Preflight(usage=5, event_usage=EventUsage("x", 1)))


def test_metric_lookup_defaults_period_and_reset() -> None:
    company = Company(
        "co",
        metrics=[
            CompanyMetric("api", "all_time", "first_of_month", 3),
            CompanyMetric("api", "all_time", "first_of_month", 99),
        ],
    )
    metric = find_metric(company, "api", None, None)
    assert metric is not None and metric.value == 3  # the first match
    assert find_metric(company, "api", "current_day", None) is None


def test_conditions_without_their_entity_never_match(wasm: WasmOracle) -> None:
    user_trait = TraitDefinition("role", "string", "user")
    cond = Condition("trait", "eq", id="t", trait_definition=user_trait, trait_value="")
    assert not both(wasm, cond, Company("co"))  # no user in scope
    assert both(wasm, cond, Company("co"), User("u"))  # missing trait reads as ""
    assert both(wasm, cond, None, User("u", traits=[Trait("", user_trait)]))
    for kind in ("company", "plan", "billing_product", "base_plan", "metric", "credit"):
        assert not condition_matches(Condition(kind, "ne", id="x"), None, None, None)
    assert not both(wasm, Condition("user", "ne", id="u", resource_ids=["x"]), Company("co"))
