"""check_flag: rule sources, type order, true-first partition, groups, reasons, usage fields."""

from __future__ import annotations

import datetime as dt

from syncd.engine.flagcheck import REASON_NO_RULES, check_flag, order_rules
from syncd.engine.wire import (
    CheckFlagResult,
    Company,
    CompanyMetric,
    Condition,
    ConditionGroup,
    FeatureEntitlement,
    Flag,
    Rule,
    Subscription,
    Trait,
    TraitDefinition,
    User,
)
from tests.engine._wasm import WasmOracle

NOW = dt.datetime(2025, 3, 10, 12, tzinfo=dt.UTC)


def agree(
    wasm: WasmOracle, flag: Flag, company: Company | None = None, user: User | None = None
) -> CheckFlagResult:
    """check_flag's result, asserted equal to the WASM engine's on value/reason/rule."""
    ours = check_flag(flag, company, user, None, NOW)
    theirs = wasm.check(flag, company, user, None, NOW)
    assert theirs is not None
    assert (ours.value, ours.reason, ours.rule_id, ours.rule_type) == (
        theirs["value"],
        theirs["reason"],
        theirs["rule_id"],
        theirs["rule_type"],
    )
    return ours


def co_cond(company_id: str = "co", op: str = "eq") -> Condition:
    return Condition("company", op, id=f"c_{company_id}", resource_ids=[company_id])


def test_no_rules_returns_default(wasm: WasmOracle) -> None:
    result = agree(wasm, Flag("f", "k", True), Company("co"))
    assert result.value is True and result.reason == REASON_NO_RULES and result.rule_id is None


def test_type_order_global_override_beats_everything(wasm: WasmOracle) -> None:
    flag = Flag(
        "f",
        "k",
        False,
        [
            Rule("std", "standard", True, "S", priority=-100),
            Rule("pe", "plan_entitlement", True, "P"),
            Rule("go", "global_override", False, "Kill switch", conditions=[co_cond("nobody")]),
        ],
    )
    result = agree(wasm, flag, Company("co"))
    # global_override ignores its conditions and wins first
    assert (result.value, result.rule_type) == (False, "global_override")
    assert result.reason == 'Matched global override rule "Kill switch" (go)'


def test_company_rule_of_global_override_type_wins(wasm: WasmOracle) -> None:
    flag = Flag("f", "k", True, [Rule("pe", "plan_entitlement", True, "P")])
    company = Company(
        "co",
        rules=[
            Rule("cr", "global_override", False, "Off", flag_id="f"),
            Rule("other", "global_override", True, "x", flag_id="g"),
        ],
    )
    assert agree(wasm, flag, company).rule_id == "cr"


def test_rules_without_flag_id_on_company_or_user_are_ignored(wasm: WasmOracle) -> None:
    flag = Flag("f", "k", False)
    company = Company("co", rules=[Rule("cr", "standard", True, "x")])
    user = User("u", rules=[Rule("ur", "standard", True, "y")])
    assert agree(wasm, flag, company, user).reason == REASON_NO_RULES


def test_true_first_partition_is_stable(wasm: WasmOracle) -> None:
    rules = [
        Rule("f1", "plan_entitlement", False, "F1"),
        Rule("t1", "plan_entitlement", True, "T1", conditions=[co_cond("nobody")]),
        Rule("f2", "plan_entitlement", False, "F2"),
        Rule("t2", "plan_entitlement", True, "T2"),
        Rule("t3", "plan_entitlement", True, "T3"),
    ]
    assert [r.id for r in order_rules(rules)] == ["t1", "t2", "t3", "f1", "f2"]
    assert agree(wasm, Flag("f", "k", False, rules), Company("co")).rule_id == "t2"


def test_standard_rules_by_ascending_priority(wasm: WasmOracle) -> None:
    rules = [
        Rule("b", "standard", True, "B", priority=5),
        Rule("a", "standard", False, "A", priority=1),
        Rule("c", "standard", True, "C", priority=1),
    ]
    assert agree(wasm, Flag("f", "k", True, rules), Company("co")).rule_id == "a"


def test_default_rule_is_last_and_unconditional(wasm: WasmOracle) -> None:
    flag = Flag(
        "f",
        "k",
        False,
        [
            Rule("d", "default", True, "D", conditions=[co_cond("nobody")]),
            Rule("s", "standard", False, "S", conditions=[co_cond("nobody")]),
        ],
    )
    assert agree(wasm, flag, Company("co")).rule_id == "d"


def test_empty_condition_group_never_matches(wasm: WasmOracle) -> None:
    flag = Flag(
        "f",
        "k",
        False,
        [
            Rule("g", "standard", True, "Empty group", condition_groups=[ConditionGroup([])]),
        ],
    )
    assert agree(wasm, flag, Company("co")).reason == REASON_NO_RULES


def test_groups_are_or_within_and_across(wasm: WasmOracle) -> None:
    hit, miss = co_cond("co"), co_cond("nobody")
    ok = Rule(
        "ok", "standard", True, "OK", condition_groups=[ConditionGroup([miss, hit]), ConditionGroup([hit])]
    )
    no = Rule(
        "no", "standard", True, "NO", condition_groups=[ConditionGroup([miss, hit]), ConditionGroup([miss])]
    )
    assert agree(wasm, Flag("f", "k", False, [no, ok]), Company("co")).rule_id == "ok"


def test_rule_without_conditions_matches_everything(wasm: WasmOracle) -> None:
    assert agree(wasm, Flag("f", "k", False, [Rule("r", "standard", True, "R")])).value is True


def test_base_plan_operators(wasm: WasmOracle) -> None:
    def base(op: str, plan: str | None) -> bool:
        cond = Condition("base_plan", op, id="bp", resource_ids=["pro"])
        flag = Flag("f", "k", False, [Rule("r", "standard", True, "R", conditions=[cond])])
        return agree(wasm, flag, Company("co", base_plan_id=plan)).value

    assert base("eq", "pro") and not base("eq", "free") and not base("eq", None)
    assert base("ne", "free") and base("ne", None) and not base("ne", "pro")
    assert base("is_empty", None) and base("not_empty", "free")
    assert not base("gt", "pro")  # other operators never match


def test_entitlement_attached_and_usage_fields(wasm: WasmOracle) -> None:
    ent = FeatureEntitlement("feat", "k", "numeric", allocation=100, usage=40)
    metric = CompanyMetric("api", "current_month", "billing_cycle", 40)
    sub = Subscription(
        "s", dt.datetime(2025, 1, 31, 10, tzinfo=dt.UTC), dt.datetime(2026, 1, 31, 10, tzinfo=dt.UTC)
    )
    cond = Condition(
        "metric",
        "lt",
        id="m",
        event_subtype="api",
        metric_value=100,
        metric_period="current_month",
        metric_period_month_reset="billing_cycle",
    )
    flag = Flag("f", "k", False, [Rule("r", "plan_entitlement", True, "Pro", conditions=[cond])])
    result = agree(wasm, flag, Company("co", entitlements=[ent], metrics=[metric], subscription=sub))
    assert result.entitlement == ent
    assert (result.feature_usage, result.feature_allocation) == (40, 100)
    assert result.feature_usage_event == "api" and result.feature_usage_period == "current_month"
    assert result.feature_usage_reset_at == dt.datetime(2025, 3, 31, 10, tzinfo=dt.UTC)


def test_trait_usage_fields(wasm: WasmOracle) -> None:
    seats = TraitDefinition("seats", "int", "company")
    cond = Condition("trait", "lt", id="t", trait_definition=seats, trait_value="10")
    flag = Flag("f", "k", False, [Rule("r", "plan_entitlement", True, "Seats", conditions=[cond])])
    result = agree(wasm, flag, Company("co", traits=[Trait("7", seats)]))
    assert (result.value, result.feature_usage, result.feature_allocation) == (True, 7, 10)


def test_flag_none_is_not_found() -> None:
    result = check_flag(None, Company("co"), now=NOW)
    assert (result.value, result.reason, result.err) == (False, "Flag not found", "flag not found")
