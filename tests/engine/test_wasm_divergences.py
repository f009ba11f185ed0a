"""Edge cases where the official WASM engine differs from the Go engine's documentation.

The WASM build is the specification. Each test names the edge case, states what the docs
(schematic-semantics.md) say, and asserts that syncd and the WASM engine both do what the
WASM engine observably does.
"""

from __future__ import annotations

import datetime as dt

from syncd.engine.flagcheck import REASON_NO_RULES, check_flag
from syncd.engine.wire import (
    CheckFlagResult,
    Company,
    CompanyMetric,
    Condition,
    ConditionGroup,
    CreditPostpaid,
    EventUsage,
    Flag,
    Preflight,
    Rule,
    Subscription,
    Trait,
    TraitDefinition,
    User,
)
from tests.engine._wasm import WasmOracle

NOW = dt.datetime(2025, 2, 15, tzinfo=dt.UTC)
INT = TraitDefinition("n", "int", "company")


def run(
    wasm: WasmOracle,
    flag: Flag,
    company: Company | None = None,
    user: User | None = None,
    preflight: Preflight | None = None,
) -> CheckFlagResult:
    ours = check_flag(flag, company, user, preflight, NOW)
    theirs = wasm.check(flag, company, user, preflight, NOW)
    assert theirs is not None
    assert (ours.value, ours.reason, ours.rule_id, ours.err) == (
        theirs["value"],
        theirs["reason"],
        theirs["rule_id"],
        theirs.get("err"),
    )
    return ours


def one(*conds: Condition, rule_id: str = "r") -> Flag:
    return Flag("f", "k", False, [Rule(rule_id, "standard", True, "R", conditions=list(conds))])


def trait(op: str, value: str, td: TraitDefinition = INT, **kw: object) -> Condition:
    return Condition("trait", op, id="c", trait_definition=td, trait_value=value, **kw)  # type: ignore[arg-type]


def test_divergence_int_trait_decimal_compares_as_float(wasm: WasmOracle) -> None:
    # Docs: strconv.ParseInt, failure -> 0. WASM: "1.5" is 1.5 (greater than 1, not equal).
    co = Company("co", traits=[Trait("1.5", INT)])
    assert run(wasm, one(trait("gt", "1")), co).value
    assert not run(wasm, one(trait("eq", "1")), co).value


def test_divergence_bool_trait_one_is_true(wasm: WasmOracle) -> None:
    # Docs: only "true" is true. WASM: "1" is true as well.
    flag_td = TraitDefinition("b", "bool", "company")
    co = Company("co", traits=[Trait("1", flag_td)])
    assert run(wasm, one(trait("eq", "true", flag_td)), co).value


def test_divergence_date_only_layouts_never_parse(wasm: WasmOracle) -> None:
    # Docs list 2006-01-02 among the layouts. WASM: a date without a time is nil.
    td = TraitDefinition("d", "date", "company")
    co = Company("co", traits=[Trait("2024-01-02", td)])
    assert run(wasm, one(trait("is_empty", "", td)), co).value


def test_divergence_date_zone_abbreviation_is_ignored(wasm: WasmOracle) -> None:
    # "PST" is skipped, not applied: 00:00 PST reads as 00:00 UTC.
    td = TraitDefinition("d", "date", "company")
    co = Company("co", traits=[Trait("2024-01-02 00:00:00 PST", td)])
    assert run(wasm, one(trait("eq", "2024-01-02T00:00:00Z", td)), co).value


def credit(op: str, rate: float | None = None) -> Condition:
    return Condition("credit", op, id="c", credit_id="cr", consumption_rate=rate)


def test_divergence_credit_gt_and_gte_invert_the_check(wasm: WasmOracle) -> None:
    # Docs: the operator is ignored. WASM: gt/gte match when the cost is NOT affordable.
    rich, poor = Company("co", credit_balances={"cr": 5.0}), Company("co", credit_balances={"cr": 0.5})
    for op in ("eq", "ne", "lt", "lte", "is_empty", "not_empty"):
        assert run(wasm, one(credit(op)), rich).value and not run(wasm, one(credit(op)), poor).value
    for op in ("gt", "gte"):
        assert not run(wasm, one(credit(op)), rich).value and run(wasm, one(credit(op)), poor).value


def test_divergence_credit_empty_balance_is_never_affordable(wasm: WasmOracle) -> None:
    # Docs: balance >= rate. WASM: a zero balance fails even at a zero rate / zero usage cost.
    empty = Company("co", credit_balances={"cr": 0.0})
    assert not run(wasm, one(credit("eq", 0.0)), empty).value
    assert not run(wasm, one(credit("eq", 0.0)), empty, preflight=Preflight(usage=3)).value
    # ...but an explicit credit_cost of 0 is affordable.
    assert run(wasm, one(credit("eq")), empty, preflight=Preflight(credit_cost={"cr": 0.0})).value


def test_divergence_comparison_trait_read_from_the_traits_entity(wasm: WasmOracle) -> None:
    # The comparison trait comes from the same entity as the trait, whatever its definition says.
    a, b_user = TraitDefinition("a", "string", "company"), TraitDefinition("b", "string", "user")
    co = Company("co", traits=[Trait("v", a), Trait("v", TraitDefinition("b", "string", "company"))])
    user = User("u", traits=[Trait("other", b_user)])
    cond = trait("eq", "", a, comparison_trait_definition=b_user)
    assert run(wasm, one(cond), co, user).value


def test_divergence_stored_trait_type_wins_over_the_conditions(wasm: WasmOracle) -> None:
    # The stored trait's comparable_type decides; the condition's only applies when missing.
    stored = TraitDefinition("s", "string", "company")
    co = Company("co", traits=[Trait("abc", stored)])
    assert run(wasm, one(trait("not_empty", "", TraitDefinition("s", "int", "company"))), co).value
    missing_bool = TraitDefinition("m", "bool", "company")
    assert run(wasm, one(trait("eq", "false", missing_bool)), co).value  # "" and "false": both false


def test_divergence_metric_without_metric_value_skips_the_rule(wasm: WasmOracle) -> None:
    # Docs: an error. WASM: the rule is skipped, even when an OR-group sibling would match.
    bad = Condition("metric", "gte", id="m", event_subtype="api", metric_value=None)
    anyone = Condition("company", "eq", id="c", resource_ids=["co"])
    flag = Flag(
        "f",
        "k",
        False,
        [
            Rule("r1", "standard", True, "Bad", condition_groups=[ConditionGroup([bad, anyone])]),
            Rule("r2", "standard", True, "Good", priority=1),
        ],
    )
    assert run(wasm, flag, Company("co")).rule_id == "r2"
    # A match earlier in the group short-circuits before the invalid condition is reached.
    flag.rules[0].condition_groups[0].conditions.reverse()
    assert run(wasm, flag, Company("co")).rule_id == "r1"


def test_divergence_metric_comparison_trait_must_be_an_integer(wasm: WasmOracle) -> None:
    # A comparison trait that is not a strict integer ("1.5", " 7") supplies a limit of 0.
    co = Company("co", traits=[Trait("1.5", INT)], metrics=[CompanyMetric("api", value=0)])
    cond = Condition(
        "metric", "lt", id="m", event_subtype="api", metric_value=100, comparison_trait_definition=INT
    )
    assert not run(wasm, one(cond), co).value  # 0 < 0 is false


def test_divergence_empty_ids_are_absent(wasm: WasmOracle) -> None:
    anyone = Condition("company", "eq", id="", resource_ids=["co"])
    assert run(wasm, one(anyone), Company("co")).reason == REASON_NO_RULES  # condition id ""
    assert run(wasm, one(rule_id=""), Company("co")).reason == REASON_NO_RULES  # rule id ""
    nameless = Flag("", "k", True, [Rule("r", "standard", False, "R")])
    assert run(wasm, nameless, Company("co")).reason == "Flag not found"  # flag id ""


def test_divergence_invalid_preflight_returns_default_with_err(wasm: WasmOracle) -> None:
    # Docs: a 400-type error. WASM: the default value, the no-rules reason and ``err`` set.
    flag = Flag("f", "k", True, [Rule("r", "standard", False, "R")])
    result = run(wasm, flag, Company("co"), preflight=Preflight(event_usage=EventUsage("api", -1)))
    assert (result.value, result.err) == (True, "preflight usage cannot be negative")


def test_divergence_int_trait_preflight_usage_reads_strict_i64_and_wraps(wasm: WasmOracle) -> None:
    co = Company("co", traits=[Trait("2.5", INT)])
    assert run(wasm, one(trait("eq", "1")), co, preflight=Preflight(usage=1)).value  # 0 + 1
    big = Company("co", traits=[Trait("9223372036854775807", INT)])
    assert run(wasm, one(trait("lt", "0")), big, preflight=Preflight(usage=1)).value  # wraps


def test_divergence_billing_anchor_on_31st_clamps_in_february(wasm: WasmOracle) -> None:
    # Docs: Go's time.Date turns 31 February into 3 March. WASM: clamped to 28 February.
    sub = Subscription(
        "s", dt.datetime(2025, 1, 31, 10, tzinfo=dt.UTC), dt.datetime(2026, 1, 31, 10, tzinfo=dt.UTC)
    )
    cond = Condition(
        "metric",
        "lt",
        id="m",
        event_subtype="api",
        metric_value=5,
        metric_period="current_month",
        metric_period_month_reset="billing_cycle",
    )
    flag = Flag("f", "k", False, [Rule("r", "plan_entitlement", True, "P", conditions=[cond])])
    company = Company("co", subscription=sub)
    theirs = wasm.check(flag, company, None, None, NOW)
    assert theirs is not None and theirs["feature_usage_reset_at"].startswith("2025-02-28T10:00:00")
    assert check_flag(flag, company, now=NOW).feature_usage_reset_at == dt.datetime(
        2025, 2, 28, 10, tzinfo=dt.UTC
    )


def test_undocumented_credit_postpaid_overdraft(wasm: WasmOracle) -> None:
    # Not in the docs: credit_postpaid lets consumption overdraw by overdraft_limit (None: no
    # limit); the "empty balance is never affordable" rule then applies to balance + overdraft.
    def company(limit: float | None) -> Company:
        return Company("co", credit_balances={"cr": 0.0}, credit_postpaid={"cr": CreditPostpaid(limit)})

    assert run(wasm, one(credit("eq")), company(10.0), preflight=Preflight(usage=10)).value
    assert not run(wasm, one(credit("eq")), company(10.0), preflight=Preflight(usage=11)).value
    assert run(wasm, one(credit("eq")), company(None), preflight=Preflight(usage=10**6)).value
    assert not run(wasm, one(credit("eq", 0.0)), company(0.0)).value
