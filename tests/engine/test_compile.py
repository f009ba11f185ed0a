"""Entitlement compilation into rule pairs, evaluated by syncd and the WASM engine."""

from __future__ import annotations

import datetime as dt

import pytest
from freezegun import freeze_time

from syncd.engine.compile import (
    EntitlementSpec,
    build_entitlements,
    compile_entitlement,
    compile_override_rules,
    compile_plan_rules,
    earliest_expiry,
    is_allocation_more_generous,
)
from syncd.engine.flagcheck import check_flag
from syncd.engine.wire import (
    CheckFlagResult,
    Company,
    CompanyMetric,
    Flag,
    Trait,
    TraitDefinition,
)
from tests.engine._wasm import WasmOracle

NOW = dt.datetime(2025, 3, 10, tzinfo=dt.UTC)
SEATS = TraitDefinition("seats_used", "int", "company")
SEATS_BOUGHT = TraitDefinition("seats_bought", "int", "company")


def spec(sid: str, value_type: str, **kw: object) -> EntitlementSpec:
    base: dict[str, object] = {"feature_id": "feat", "feature_key": "api", "flag_id": "flag_api"}
    base.update(kw)
    return EntitlementSpec(sid, value_type=value_type, **base)  # type: ignore[arg-type]


def api_calls(sid: str, limit: int, **kw: object) -> EntitlementSpec:
    return spec(
        sid,
        "numeric",
        value_numeric=limit,
        event_subtype="api_call",
        metric_period="current_month",
        metric_period_month_reset="first_of_month",
        **kw,
    )


def evaluate(
    wasm: WasmOracle, specs: list[EntitlementSpec], company: Company, now: dt.datetime = NOW
) -> CheckFlagResult:
    """Compile, put the company's entitlements on it, and check with both engines."""
    flag = Flag("flag_api", "api", False, compile_plan_rules(specs, "flag_api", now))
    company.rules = compile_override_rules(specs, company.id, now)
    company.entitlements = build_entitlements(specs, company, now)
    ours = check_flag(flag, company, None, None, now)
    theirs = wasm.check(flag, company, None, None, now)
    assert theirs is not None
    assert (ours.value, ours.rule_id, ours.rule_type) == (
        theirs["value"],
        theirs["rule_id"],
        theirs["rule_type"],
    )
    assert ours.feature_allocation == theirs["feature_allocation"]
    assert ours.feature_usage == theirs["feature_usage"]
    return ours


def usage(n: int) -> list[CompanyMetric]:
    return [CompanyMetric("api_call", "current_month", "first_of_month", n)]


def test_boolean_compiles_to_one_rule_scoped_to_the_plan_version() -> None:
    rules = compile_entitlement(
        spec("e1", "boolean", value_bool=True, plan_id="pro", plan_version_id="pro_v2"), NOW
    )
    assert len(rules) == 1
    (rule,) = rules
    assert (rule.rule_type, rule.value, rule.id, rule.flag_id) == (
        "plan_entitlement",
        True,
        "rule_e1",
        "flag_api",
    )
    assert [(c.condition_type, c.resource_ids) for c in rule.conditions] == [("plan_version", ["pro_v2"])]


def test_numeric_event_compiles_to_a_pair() -> None:
    grant, exceeded = compile_entitlement(api_calls("e1", 1000, plan_id="pro"), NOW)
    assert (grant.rule_type, grant.value) == ("plan_entitlement", True)
    assert (exceeded.rule_type, exceeded.value) == ("plan_entitlement_usage_exceeded", False)
    metric = grant.conditions[1]
    assert (metric.condition_type, metric.operator, metric.metric_value) == ("metric", "lt", 1000)
    assert [c.condition_type for c in exceeded.conditions] == ["plan"]


def test_override_pair_uses_company_scope_and_stable_ids() -> None:
    s = api_calls("o1", 500, company_id="co", rule_id="rule_x", rule_id_usage_exceeded="rule_y")
    grant, exceeded = compile_entitlement(s, NOW)
    assert (grant.id, exceeded.id) == ("rule_x", "rule_y")
    assert grant.rule_type == "company_override"
    assert exceeded.rule_type == "company_override_usage_exceeded"
    assert grant.conditions[0].resource_ids == ["co"]
    assert compile_entitlement(s, NOW) == [grant, exceeded]  # deterministic


@pytest.mark.parametrize(
    ("used", "expected", "rule"),
    [
        (700, True, "rule_plan"),  # the override's 500 is exceeded, the plan's 1000 is not
        (400, True, "rule_ovr"),
        (1200, False, "rule_ovr_usage_exceeded"),
    ],
)
def test_override_most_generous_numeric(wasm: WasmOracle, used: int, expected: bool, rule: str) -> None:
    specs = [api_calls("plan", 1000, plan_id="pro"), api_calls("ovr", 500, company_id="co")]
    result = evaluate(wasm, specs, Company("co", plan_ids=["pro"], metrics=usage(used)))
    assert (result.value, result.rule_id) == (expected, rule)


def test_negative_boolean_override_wins(wasm: WasmOracle) -> None:
    specs = [
        spec("plan", "boolean", value_bool=True, plan_id="pro"),
        spec("ovr", "boolean", value_bool=False, company_id="co"),
    ]
    company = Company("co", plan_ids=["pro"])
    result = evaluate(wasm, specs, company)
    assert (result.value, result.rule_type) == (False, "company_override")
    assert company.entitlements[0].value_type == "boolean"


def test_add_on_unlimited_beats_the_base_plan_limit(wasm: WasmOracle) -> None:
    specs = [api_calls("base", 100, plan_id="pro"), spec("addon", "unlimited", plan_id="addon_unlimited")]
    company = Company("co", plan_ids=["pro", "addon_unlimited"], metrics=usage(150))
    result = evaluate(wasm, specs, company)
    assert (result.value, result.rule_id) == (True, "rule_addon")
    assert company.entitlements[0].value_type == "unlimited"
    assert company.entitlements[0].allocation is None


def test_two_add_ons_and_a_plan_any_grant_wins(wasm: WasmOracle) -> None:
    specs = [
        api_calls("base", 100, plan_id="pro"),
        api_calls("a1", 300, plan_id="a1"),
        api_calls("a2", 200, plan_id="a2"),
    ]
    company = Company("co", plan_ids=["pro", "a1", "a2"], metrics=usage(250))
    assert evaluate(wasm, specs, company).rule_id == "rule_a1"
    assert company.entitlements[0].allocation == 300


def test_trait_feature_and_trait_allocation(wasm: WasmOracle) -> None:
    by_number = spec("n", "numeric", value_numeric=5, usage_trait=SEATS, plan_id="pro")
    by_trait = spec("t", "trait", value_trait=SEATS_BOUGHT, usage_trait=SEATS, plan_id="team")
    company = Company("co", plan_ids=["pro", "team"], traits=[Trait("7", SEATS), Trait("10", SEATS_BOUGHT)])
    result = evaluate(wasm, [by_number, by_trait], company)
    assert (result.value, result.rule_id, result.feature_allocation) == (True, "rule_t", 10)
    assert company.entitlements[0].allocation == 10 and company.entitlements[0].usage == 7


def test_credit_entitlement(wasm: WasmOracle) -> None:
    s = spec("c", "credit", credit_id="tokens", consumption_rate=2.0, plan_id="pro")
    rich = Company("co", plan_ids=["pro"], credit_balances={"tokens": 3.0})
    assert evaluate(wasm, [s], rich).value is True
    assert rich.entitlements[0].credit_remaining == 3.0
    poor = Company("co", plan_ids=["pro"], credit_balances={"tokens": 1.0})
    assert evaluate(wasm, [s], poor).rule_type == "plan_entitlement_usage_exceeded"


def test_expired_override_does_not_compile(wasm: WasmOracle) -> None:
    expiry = dt.datetime(2025, 3, 10, 12, tzinfo=dt.UTC)
    specs = [
        spec("plan", "boolean", value_bool=False, plan_id="pro"),
        spec("trial", "boolean", value_bool=True, company_id="co", expires_at=expiry),
    ]
    with freeze_time("2025-03-10T11:59:59Z"):
        now = dt.datetime.now(dt.UTC)
        assert evaluate(wasm, specs, Company("co", plan_ids=["pro"]), now).value is True
        assert earliest_expiry(specs, now) == expiry
    with freeze_time("2025-03-10T12:00:00Z"):
        now = dt.datetime.now(dt.UTC)
        assert compile_override_rules(specs, "co", now) == []
        assert evaluate(wasm, specs, Company("co", plan_ids=["pro"]), now).value is False
        assert earliest_expiry(specs, now) is None


def test_summary_reports_most_generous_numeric() -> None:
    specs = [api_calls("plan", 1000, plan_id="pro"), api_calls("ovr", 500, company_id="co")]
    company = Company("co", plan_ids=["pro"], metrics=usage(42))
    (ent,) = build_entitlements(specs, company, NOW)
    assert (ent.value_type, ent.allocation, ent.usage) == ("numeric", 1000, 42)
    assert ent.metric_reset_at == dt.datetime(2025, 4, 1, tzinfo=dt.UTC)


def test_summary_ignores_other_plans_and_companies() -> None:
    specs = [api_calls("plan", 1000, plan_id="enterprise"), api_calls("ovr", 5, company_id="x")]
    assert build_entitlements(specs, Company("co", plan_ids=["pro"]), NOW) == []


@pytest.mark.parametrize(
    ("a1", "p1", "a2", "p2", "expected"),
    [
        (None, "current_month", 10**9, None, True),  # unlimited beats limited
        (10, None, None, None, False),
        (10, None, 5, None, True),
        (1, "current_day", 100, None, True),  # period-based beats period-less
        (100, "current_week", 1000, "current_month", False),  # 14.3/day < 33.3/day
        (100, "current_day", 1000, "current_month", True),
        (100, "all_time", 50, "current_day", True),  # all_time compares raw allocations
    ],
)
def test_is_allocation_more_generous(
    a1: int | None, p1: str | None, a2: int | None, p2: str | None, expected: bool
) -> None:
    assert is_allocation_more_generous(a1, p1, a2, p2) is expected


def test_invalid_specs_are_rejected() -> None:
    with pytest.raises(ValueError, match="no scope"):
        compile_entitlement(spec("x", "boolean", value_bool=True), NOW)
    with pytest.raises(ValueError, match="neither an event nor a usage trait"):
        compile_entitlement(spec("x", "numeric", value_numeric=1, plan_id="p"), NOW)
    with pytest.raises(ValueError, match="unknown value_type"):
        compile_entitlement(spec("x", "bogus", plan_id="p"), NOW)
