"""Compile plan, add-on and override entitlements into rule pairs and entitlement summaries.

Each entitlement becomes a grant rule (``plan_entitlement`` / ``company_override``, value from
the entitlement) carrying its scope and usage condition, plus, for metered value types, a
``*_usage_exceeded`` companion with value False and the scope alone. Because the engine tries
every True entitlement rule before any False one, this yields "most generous wins" across a
base plan, add-ons and overrides, and lets a boolean override (no usage condition) win outright,
including a negative one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from syncd.engine.conditions import find_metric, find_trait
from syncd.engine.periods import next_reset
from syncd.engine.typeconvert import parse_i64
from syncd.engine.wire import (
    Company,
    Condition,
    FeatureEntitlement,
    Rule,
    TraitDefinition,
)

METERED = frozenset({"numeric", "trait", "credit"})
DAILY_DIVISOR = {"current_day": 1.0, "current_week": 7.0, "current_month": 30.0}


@dataclass(slots=True, frozen=True)
class EntitlementSpec:
    """One plan/add-on entitlement or company override, as the catalog stores it.

    Scope: ``company_id`` makes it an override; otherwise ``plan_version_id`` (preferred, so
    versions can differ) or ``plan_id`` scopes it to companies on that plan or add-on.
    """

    id: str
    feature_id: str
    feature_key: str
    flag_id: str
    value_type: str  # boolean | numeric | unlimited | trait | credit
    value_bool: bool | None = None
    value_numeric: int | None = None
    value_trait: TraitDefinition | None = None  # allocation trait (value_type "trait")
    usage_trait: TraitDefinition | None = None  # usage trait of a trait-based feature
    event_subtype: str | None = None  # event of an event-based feature
    metric_period: str | None = None
    metric_period_month_reset: str | None = None
    credit_id: str | None = None
    consumption_rate: float | None = None
    plan_id: str | None = None
    plan_version_id: str | None = None
    company_id: str | None = None
    expires_at: dt.datetime | None = None
    name: str = ""
    rule_id: str | None = None
    rule_id_usage_exceeded: str | None = None
    soft_limit: int | None = None

    @property
    def is_override(self) -> bool:
        return self.company_id is not None

    def active(self, now: dt.datetime) -> bool:
        return self.expires_at is None or self.expires_at > now

    def grant_rule_id(self) -> str:
        return self.rule_id or f"rule_{self.id}"

    def exceeded_rule_id(self) -> str:
        return self.rule_id_usage_exceeded or f"rule_{self.id}_usage_exceeded"


def _scope(spec: EntitlementSpec) -> Condition:
    if spec.company_id is not None:
        return Condition("company", "eq", id=f"cond_{spec.id}_scope", resource_ids=[spec.company_id])
    if spec.plan_version_id is not None:
        return Condition(
            "plan_version", "eq", id=f"cond_{spec.id}_scope", resource_ids=[spec.plan_version_id]
        )
    if spec.plan_id is not None:
        return Condition("plan", "eq", id=f"cond_{spec.id}_scope", resource_ids=[spec.plan_id])
    raise ValueError(f"entitlement {spec.id} has no scope (plan, plan version or company)")


def _usage(spec: EntitlementSpec) -> Condition:
    """The 'usage below allocation' (or 'credit affordable') condition of a metered grant."""
    cid = f"cond_{spec.id}_usage"
    if spec.value_type == "credit":
        if spec.credit_id is None:
            raise ValueError(f"credit entitlement {spec.id} has no credit_id")
        # Any operator but gt/gte asks "can the company afford it?" (WASM-observed).
        return Condition(
            "credit",
            "lt",
            id=cid,
            credit_id=spec.credit_id,
            consumption_rate=spec.consumption_rate,
            event_subtype=spec.event_subtype,
        )
    limit_trait = spec.value_trait if spec.value_type == "trait" else None
    if spec.value_type == "trait" and limit_trait is None:
        raise ValueError(f"trait entitlement {spec.id} has no value_trait")
    limit = spec.value_numeric if spec.value_type == "numeric" else 0
    if limit is None:
        raise ValueError(f"numeric entitlement {spec.id} has no value_numeric")
    if spec.event_subtype is not None:
        # metric_value must be present even when a comparison trait supplies the limit:
        # the engine skips a metric condition's rule when it is missing.
        return Condition(
            "metric",
            "lt",
            id=cid,
            event_subtype=spec.event_subtype,
            metric_value=limit,
            metric_period=spec.metric_period or "all_time",
            metric_period_month_reset=spec.metric_period_month_reset or "first_of_month",
            comparison_trait_definition=limit_trait,
        )
    if spec.usage_trait is not None:
        return Condition(
            "trait",
            "lt",
            id=cid,
            trait_definition=spec.usage_trait,
            trait_value=str(limit),
            comparison_trait_definition=limit_trait,
        )
    raise ValueError(f"metered entitlement {spec.id} has neither an event nor a usage trait")


def compile_entitlement(spec: EntitlementSpec, now: dt.datetime) -> list[Rule]:
    """The rule pair (or single rule) for one entitlement; [] once an override has expired."""
    if not spec.active(now):
        return []
    grant_type = "company_override" if spec.is_override else "plan_entitlement"
    name = spec.name or spec.feature_key
    scope = _scope(spec)
    if spec.value_type in ("boolean", "unlimited"):
        value = bool(spec.value_bool) if spec.value_type == "boolean" else True
        return [Rule(spec.grant_rule_id(), grant_type, value, name, conditions=[scope], flag_id=spec.flag_id)]
    if spec.value_type not in METERED:
        raise ValueError(f"entitlement {spec.id} has unknown value_type {spec.value_type!r}")
    return [
        Rule(
            spec.grant_rule_id(),
            grant_type,
            True,
            name,
            conditions=[scope, _usage(spec)],
            flag_id=spec.flag_id,
        ),
        Rule(
            spec.exceeded_rule_id(),
            f"{grant_type}_usage_exceeded",
            False,
            name,
            conditions=[_scope(spec)],
            flag_id=spec.flag_id,
        ),
    ]


def compile_plan_rules(specs: Iterable[EntitlementSpec], flag_id: str, now: dt.datetime) -> list[Rule]:
    """Plan and add-on rules that live on the flag (overrides are skipped: they are company rules)."""
    out: list[Rule] = []
    for spec in specs:
        if spec.flag_id == flag_id and not spec.is_override:
            out.extend(compile_entitlement(spec, now))
    return out


def compile_override_rules(specs: Iterable[EntitlementSpec], company_id: str, now: dt.datetime) -> list[Rule]:
    """A company's override rules (``company.rules``), expired overrides left out."""
    out: list[Rule] = []
    for spec in specs:
        if spec.company_id == company_id:
            out.extend(compile_entitlement(spec, now))
    return out


def is_allocation_more_generous(a1: int | None, p1: str | None, a2: int | None, p2: str | None) -> bool:
    """Whether allocation 1 (per period 1) is strictly more generous than allocation 2.

    None is unlimited. Period-based beats period-less; otherwise compare daily rates, except
    that all_time compares raw allocations.
    """
    if a1 is None:
        return a2 is not None
    if a2 is None:
        return False
    if not p1 and not p2:
        return a1 > a2
    if p1 and not p2:
        return True
    if p2 and not p1:
        return False
    if p1 == "all_time" or p2 == "all_time":
        return a1 > a2
    return a1 / DAILY_DIVISOR.get(p1 or "", 1.0) > a2 / DAILY_DIVISOR.get(p2 or "", 1.0)


def _applies(spec: EntitlementSpec, company: Company) -> bool:
    if spec.company_id is not None:
        return spec.company_id == company.id
    if spec.plan_version_id is not None:
        return spec.plan_version_id in company.plan_version_ids
    return spec.plan_id is not None and spec.plan_id in company.plan_ids


def _allocation(spec: EntitlementSpec, company: Company) -> int | None:
    if spec.value_type == "unlimited":
        return None
    if spec.value_type == "trait" and spec.value_trait is not None:
        return parse_i64(find_trait(company.traits, spec.value_trait.id)) or 0
    return spec.value_numeric


def _most_generous(cands: list[EntitlementSpec], company: Company) -> EntitlementSpec:
    # Boolean overrides always win, including negative ones.
    for spec in cands:
        if spec.is_override and spec.value_type == "boolean":
            return spec
    best = cands[0]
    for spec in cands[1:]:
        if best.value_type == "boolean" and spec.value_type == "boolean":
            if spec.value_bool and not best.value_bool:
                best = spec
            continue
        if best.value_type == "boolean" or (
            spec.value_type != "boolean"
            and is_allocation_more_generous(
                _allocation(spec, company),
                spec.metric_period,
                _allocation(best, company),
                best.metric_period,
            )
        ):
            best = spec
    return best


def summarize(spec: EntitlementSpec, company: Company, now: dt.datetime) -> FeatureEntitlement:
    """The FeatureEntitlement record for the effective entitlement of one feature."""
    ent = FeatureEntitlement(spec.feature_id, spec.feature_key, spec.value_type)
    ent.soft_limit = spec.soft_limit
    if spec.value_type in ("numeric", "trait"):
        ent.allocation = _allocation(spec, company)
        if spec.event_subtype is not None:
            period = spec.metric_period or "all_time"
            reset = spec.metric_period_month_reset or "first_of_month"
            metric = find_metric(company, spec.event_subtype, period, reset)
            ent.usage = 0 if metric is None else metric.value
            ent.event_name = ent.event_subtype = spec.event_subtype
            ent.metric_period, ent.month_reset = period, reset
            ent.metric_reset_at = next_reset(period, reset, company.subscription, now)
        elif spec.usage_trait is not None:
            ent.usage = parse_i64(find_trait(company.traits, spec.usage_trait.id)) or 0
    elif spec.value_type == "credit" and spec.credit_id is not None:
        ent.credit_id = spec.credit_id
        ent.consumption_rate = spec.consumption_rate
        ent.event_subtype = spec.event_subtype
        remaining = company.credit_balances.get(spec.credit_id, 0.0)
        ent.credit_remaining = ent.credit_settled = remaining
        ent.credit_reserved = 0.0
    return ent


def build_entitlements(
    specs: Iterable[EntitlementSpec], company: Company, now: dt.datetime
) -> list[FeatureEntitlement]:
    """One resolved entitlement per feature for a company, most generous source winning."""
    by_feature: dict[str, list[EntitlementSpec]] = {}
    for spec in specs:
        if spec.active(now) and _applies(spec, company):
            by_feature.setdefault(spec.feature_key, []).append(spec)
    out = []
    for key in sorted(by_feature):
        # Overrides first so that, on a tie, the override is the one reported.
        cands = sorted(by_feature[key], key=lambda s: not s.is_override)
        out.append(summarize(_most_generous(cands, company), company, now))
    return out


def earliest_expiry(specs: Iterable[EntitlementSpec], now: dt.datetime) -> dt.datetime | None:
    """When the next still-active entitlement expires (a snapshot boundary)."""
    times = [s.expires_at for s in specs if s.expires_at is not None and s.expires_at > now]
    return min(times) if times else None
