"""Condition and rule matching (AND of conditions, AND of OR-groups)."""

from __future__ import annotations

import math

from syncd.engine.typeconvert import (
    Number,
    compare_numbers,
    compare_typed,
    parse_i64,
    parse_number,
)
from syncd.engine.wire import Company, CompanyMetric, Condition, Preflight, Rule, Trait, User


def wrap_i64(value: int) -> int:
    return (value + 2**63) % 2**64 - 2**63


class EngineError(Exception):
    """An evaluation error the engine reports in ``err`` rather than raising to the caller."""


def find_metric(
    company: Company, event_subtype: str, period: str | None, month_reset: str | None
) -> CompanyMetric | None:
    """The pre-aggregated metric for (event, period, month reset); unset parts default."""
    period = period or "all_time"
    month_reset = month_reset or "first_of_month"
    for metric in company.metrics:
        if (
            metric.event_subtype == event_subtype
            and metric.period == period
            and metric.month_reset == month_reset
        ):
            return metric
    return None


def metric_value(company: Company, cond: Condition) -> int:
    if cond.event_subtype is None:
        return 0
    metric = find_metric(company, cond.event_subtype, cond.metric_period, cond.metric_period_month_reset)
    return 0 if metric is None else metric.value


def find_trait(traits: list[Trait], trait_id: str, *, match_empty: bool = False) -> str:
    """A trait's raw value; a missing trait reads as the empty string.

    An empty id finds nothing when evaluating conditions; the usage/allocation fields of a
    result match ids literally, empty included (both WASM-observed).
    """
    if not trait_id and not match_empty:
        return ""
    for trait in traits:
        if trait.trait_definition is not None and trait.trait_definition.id == trait_id:
            return trait.value
    return ""


def _entity_traits(entity_type: str, company: Company | None, user: User | None) -> list[Trait] | None:
    if entity_type == "user":
        return None if user is None else user.traits
    return None if company is None else company.traits


def _membership(ids: list[str], cond: Condition) -> bool:
    hit = any(i in cond.resource_ids for i in ids)
    return not hit if cond.operator == "ne" else hit


def _base_plan(company: Company, cond: Condition) -> bool:
    plan = company.base_plan_id
    op = cond.operator
    if op == "eq":
        return plan is not None and plan in cond.resource_ids
    if op == "ne":
        return plan is None or plan not in cond.resource_ids
    if op == "is_empty":
        return plan is None
    if op == "not_empty":
        return plan is not None
    return False


def _metric(company: Company, cond: Condition, pf: Preflight | None) -> bool:
    if cond.event_subtype is None:
        return False
    left = metric_value(company, cond)
    if pf is not None:
        eu = pf.event_usage
        if eu is not None and eu.event_subtype == cond.event_subtype:
            left = wrap_i64(left + eu.quantity)
        elif pf.usage is not None:
            left = wrap_i64(left + pf.usage)
    if cond.metric_value is None:
        # An evaluation error: the WASM engine skips the whole rule (even when a comparison
        # trait would supply the limit, and even inside an OR group).
        raise EngineError("metric condition has no metric_value")
    right: Number = cond.metric_value
    ctd = cond.comparison_trait_definition
    if ctd is not None:
        # A comparison trait that is missing or not an integer compares as 0.
        right = parse_i64(find_trait(company.traits, ctd.id)) or 0
    return compare_numbers(left, right, cond.operator)


def _find(traits: list[Trait], trait_id: str) -> Trait | None:
    if not trait_id:
        return None
    for trait in traits:
        if trait.trait_definition is not None and trait.trait_definition.id == trait_id:
            return trait
    return None


def _trait(cond: Condition, company: Company | None, user: User | None, pf: Preflight | None) -> bool:
    td = cond.trait_definition
    if td is None:
        return False
    traits = _entity_traits(td.entity_type, company, user)
    if traits is None:
        return False
    found = _find(traits, td.id)
    left = "" if found is None else found.value
    # The comparison type is the stored trait's own type; a missing trait reads as an empty
    # value under the condition's definition, or as a string when that definition has no id.
    stored = None if found is None else found.trait_definition
    fallback = td.comparable_type if td.id else "string"
    ctype = fallback if stored is None else stored.comparable_type
    right = cond.trait_value
    ctd = cond.comparison_trait_definition
    if ctd is not None and ctd.id:
        # WASM-observed: a comparison definition with an empty id is ignored here (in metric
        # conditions it reads as 0). The comparison trait is read from the same entity as
        # the trait, whatever entity type its own definition names.
        right = find_trait(traits, ctd.id)
    if ctype == "int" and pf is not None and pf.usage is not None and pf.usage > 0:
        # WASM-observed: with preflight usage the stored value is read as a strict i64 (a
        # decimal reads as 0) and the sum wraps like Rust's i64 arithmetic in release builds.
        total = wrap_i64((parse_i64(left) or 0) + pf.usage)
        return compare_numbers(total, parse_number(right), cond.operator)
    return compare_typed(ctype, left, right, cond.operator)


def _affordable(company: Company, cond: Condition, credit_id: str, pf: Preflight | None) -> bool:
    balance = company.credit_balances.get(credit_id, 0.0)
    postpaid = company.credit_postpaid.get(credit_id)
    if postpaid is not None:
        # Post-paid credit may overdraw by the limit, or without bound when it has none.
        limit = postpaid.overdraft_limit
        balance = math.inf if limit is None else balance + limit
    rate = 1.0 if cond.consumption_rate is None else cond.consumption_rate
    if pf is not None:
        if pf.credit_cost is not None and credit_id in pf.credit_cost:
            return balance >= pf.credit_cost[credit_id]  # caller-asserted cost wins
        eu = pf.event_usage
        if eu is not None and eu.event_subtype == cond.event_subtype and eu.quantity > 0:
            return balance >= eu.quantity * rate and balance > 0
        if pf.usage is not None and pf.usage > 0:
            return balance >= pf.usage * rate and balance > 0
    # One unit must be affordable, and an empty balance never is (even at a zero rate).
    return balance >= rate and balance > 0


def _credit(company: Company, cond: Condition, pf: Preflight | None) -> bool:
    if cond.credit_id is None:
        return False
    ok = _affordable(company, cond, cond.credit_id, pf)
    # WASM-observed: gt/gte ask the opposite question ("would this exceed the balance?");
    # every other operator asks "is it affordable?".
    return not ok if cond.operator in ("gt", "gte") else ok


def condition_matches(
    cond: Condition, company: Company | None, user: User | None, pf: Preflight | None
) -> bool:
    if not cond.id:
        return False  # WASM-observed: a condition without an id never matches
    ctype = cond.condition_type
    if ctype == "trait":
        return _trait(cond, company, user, pf)
    if ctype == "user":
        return user is not None and _membership([user.id], cond)
    if company is None:
        return False
    if ctype == "company":
        return _membership([company.id], cond)
    if ctype == "plan":
        return _membership(company.plan_ids, cond)
    if ctype == "plan_version":
        return _membership(company.plan_version_ids, cond)
    if ctype == "billing_product":
        return _membership(company.billing_product_ids, cond)
    if ctype == "base_plan":
        return _base_plan(company, cond)
    if ctype == "metric":
        return _metric(company, cond, pf)
    if ctype == "credit":
        return _credit(company, cond, pf)
    return False


def rule_matches(rule: Rule, company: Company | None, user: User | None, pf: Preflight | None) -> bool:
    """Whether a rule matches; raises EngineError when a condition it reaches is invalid."""
    if rule.rule_type in ("default", "global_override"):
        return True  # unconditional by definition; conditions are ignored
    for cond in rule.conditions:
        if not condition_matches(cond, company, user, pf):
            return False
    for group in rule.condition_groups:
        # OR within a group; an empty group matches nothing.
        # OR within a group, short-circuiting like the engine does (an invalid condition after
        # a match is never reached).
        if not any(condition_matches(c, company, user, pf) for c in group.conditions):
            return False
    return True
