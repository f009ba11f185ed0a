"""Full flag evaluation: rule grouping, priority order and the result's entitlement fields."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import NamedTuple

from syncd.engine.conditions import (
    EngineError,
    find_trait,
    metric_value,
    rule_matches,
)
from syncd.engine.periods import next_reset
from syncd.engine.typeconvert import parse_i64
from syncd.engine.wire import (
    CheckFlagResult,
    Company,
    FeatureEntitlement,
    Flag,
    Preflight,
    Rule,
    User,
)

REASON_NO_RULES = "No rules matched; default value for flag"
REASON_FLAG_NOT_FOUND = "Flag not found"
REASON_NO_CONTEXT = "No company or user context; default value for flag"
REASON_COMPANY_NOT_FOUND = "Company not found"
REASON_USER_NOT_FOUND = "User not found"
REASON_SERVER_ERROR = "Server error; Schematic has been notified"

# Evaluation order of rule types. Within the four entitlement types, rules with value=True are
# moved to the front (a stable partition): any matching grant from any plan, add-on or
# override wins before a usage-exceeded denial is considered ("most generous").
TYPE_ORDER = (
    "global_override",
    "company_override",
    "plan_entitlement",
    "company_override_usage_exceeded",
    "plan_entitlement_usage_exceeded",
    "standard",
    "default",
)
ENTITLEMENT_TYPES = frozenset(
    {
        "company_override",
        "plan_entitlement",
        "company_override_usage_exceeded",
        "plan_entitlement_usage_exceeded",
    }
)


def order_rules(rules: list[Rule]) -> list[Rule]:
    """All candidate rules in the order the engine tries them."""
    groups: dict[str, list[Rule]] = {}
    for rule in rules:
        groups.setdefault(rule.rule_type, []).append(rule)
    ordered: list[Rule] = []
    for rule_type in TYPE_ORDER:
        group = groups.get(rule_type)
        if not group:
            continue
        if rule_type == "standard":
            group = sorted(group, key=lambda r: r.priority)
        elif rule_type in ENTITLEMENT_TYPES:
            group = [r for r in group if r.value] + [r for r in group if not r.value]
        ordered.extend(group)
    return ordered


def candidate_rules(flag: Flag, company: Company | None, user: User | None) -> list[Rule]:
    """Flag rules plus the company's and user's rules for this flag (by ``flag_id``)."""
    rules = list(flag.rules)
    if company is not None:
        rules.extend(r for r in company.rules if r.flag_id is not None and r.flag_id == flag.id)
    if user is not None:
        rules.extend(r for r in user.rules if r.flag_id is not None and r.flag_id == flag.id)
    return rules


def _has_rules_for(company: Company | None, user: User | None, flag_id: str) -> bool:
    if company is not None and company.rules and any(r.flag_id == flag_id for r in company.rules):
        return True
    return user is not None and bool(user.rules) and any(r.flag_id == flag_id for r in user.rules)


def reason_for(rule: Rule) -> str:
    return f'Matched {rule.rule_type.replace("_", " ")} rule "{rule.name}" ({rule.id})'


def find_entitlement(company: Company | None, flag_key: str) -> FeatureEntitlement | None:
    if company is None:
        return None
    for ent in company.entitlements:
        if ent.feature_key == flag_key:
            return ent
    return None


class UsageFields(NamedTuple):
    """The deprecated flat usage fields of a result matched by an entitlement rule."""

    allocation: int | None = None
    usage: int | None = None
    event: str | None = None
    period: str | None = None
    reset_at: dt.datetime | None = None


NO_USAGE = UsageFields()


def usage_fields(rule: Rule, company: Company, now: dt.datetime) -> UsageFields:
    """Usage fields from the matched entitlement rule's first metric or trait condition.

    Integers here are read strictly (``parse::<i64>``): a comparison trait that is not an
    integer leaves the allocation as it was; a usage trait that is not one reads as 0.
    """
    for cond in rule.conditions:
        ctd = cond.comparison_trait_definition
        if cond.condition_type == "metric":
            period = cond.metric_period or "all_time"
            allocation = cond.metric_value
            if ctd is not None:
                allocation = _int_or(find_trait(company.traits, ctd.id, match_empty=True), allocation)
            return UsageFields(
                allocation=allocation,
                usage=metric_value(company, cond),
                event=cond.event_subtype,
                period=period,
                reset_at=next_reset(period, cond.metric_period_month_reset, company.subscription, now),
            )
        if cond.condition_type == "trait":
            usage: int | None = 0
            if cond.trait_definition is not None:
                usage = _int_or(find_trait(company.traits, cond.trait_definition.id, match_empty=True), 0)
            allocation = _int_or(cond.trait_value, 0)
            if ctd is not None:
                allocation = _int_or(find_trait(company.traits, ctd.id, match_empty=True), allocation)
            return UsageFields(allocation=allocation, usage=usage)
    return NO_USAGE


def _int_or(text: str, default: int | None) -> int | None:
    value = parse_i64(text)
    return default if value is None else value


def _validate(preflight: Preflight | None) -> str | None:
    if preflight is None:
        return None
    if preflight.usage is not None and preflight.usage < 0:
        return "preflight usage cannot be negative"
    if preflight.event_usage is not None and preflight.event_usage.quantity < 0:
        return "preflight usage cannot be negative"
    if preflight.credit_cost is not None and any(v < 0 for v in preflight.credit_cost.values()):
        return "preflight credit cost cannot be negative"
    return None


def check_flag(
    flag: Flag | None,
    company: Company | None = None,
    user: User | None = None,
    preflight: Preflight | None = None,
    now: dt.datetime | None = None,
    *,
    ordered_flag_rules: Sequence[Rule] | None = None,
) -> CheckFlagResult:
    """Evaluate one flag for a company and/or user, exactly as the rules engine does.

    ``now`` drives metric reset timestamps; it defaults to the current UTC time.
    ``ordered_flag_rules``: the flag's own rules already in evaluation order
    (``order_rules(flag.rules)``), so that callers evaluating a flag many times need not
    re-sort; ignored when the company or user brings rules for this flag.
    """
    if now is None:
        now = dt.datetime.now(dt.UTC)
    if flag is None:
        return CheckFlagResult(flag_key="", value=False, reason=REASON_FLAG_NOT_FOUND, err="flag not found")
    company_id = None if company is None else company.id
    user_id = None if user is None else user.id
    entitlement = find_entitlement(company, flag.key)
    problem = _validate(preflight)
    if problem is not None:
        # Invalid preflight: the default value with an error, never a rule's verdict.
        return CheckFlagResult(
            flag_key=flag.key,
            value=flag.default_value,
            reason=REASON_NO_RULES,
            flag_id=flag.id,
            company_id=company_id,
            user_id=user_id,
            err=problem,
        )
    if not flag.id:
        # WASM-observed: a flag without an id evaluates no rules ("Flag not found", default).
        return CheckFlagResult(
            flag_key=flag.key,
            value=flag.default_value,
            reason=REASON_FLAG_NOT_FOUND,
            flag_id=flag.id,
            company_id=company_id,
            user_id=user_id,
        )
    rules: Sequence[Rule]
    if ordered_flag_rules is None or _has_rules_for(company, user, flag.id):
        rules = order_rules(candidate_rules(flag, company, user))
    else:
        rules = ordered_flag_rules
    for rule in rules:
        if not rule.id:
            continue  # WASM-observed: a rule without an id never matches
        try:
            if not rule_matches(rule, company, user, preflight):
                continue
        except EngineError:
            continue  # an invalid rule is skipped, not fatal to the check
        fields = NO_USAGE
        if company is not None and rule.rule_type in ENTITLEMENT_TYPES:
            fields = usage_fields(rule, company, now)
        return CheckFlagResult(
            flag_key=flag.key,
            value=rule.value,
            reason=reason_for(rule),
            flag_id=flag.id,
            rule_id=rule.id,
            rule_type=rule.rule_type,
            company_id=company_id,
            user_id=user_id,
            entitlement=entitlement,
            feature_allocation=fields.allocation,
            feature_usage=fields.usage,
            feature_usage_event=fields.event,
            feature_usage_period=fields.period,
            feature_usage_reset_at=fields.reset_at,
        )
    return CheckFlagResult(
        flag_key=flag.key,
        value=flag.default_value,
        reason=REASON_NO_RULES,
        flag_id=flag.id,
        company_id=company_id,
        user_id=user_id,
        entitlement=entitlement,
    )
