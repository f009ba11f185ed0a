"""Per-company compiled snapshots: every flag's result precomputed, valid until a boundary.

A snapshot holds the result of ``check_flag(flag, company)`` (no user, no preflight) for every
flag, and the instant until which those results stay true. Results only change when an input
changes (company, flags) or when time crosses a boundary: the next metric period reset any
metric condition looks at (the reported reset time moves, and the server's counters roll over)
or a boundary the caller knows about (an override's expiry, a trial's end).

Per-flag facts that do not depend on the company (rule order, whether a user could matter,
which metric periods are consulted) are computed once per catalog in ``FlagPlan``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from syncd.engine.flagcheck import check_flag, order_rules
from syncd.engine.periods import next_reset
from syncd.engine.wire import CheckFlagResult, Company, Condition, Flag, Rule, Subscription

PeriodKey = tuple[str | None, str | None]


def _conditions(rules: Iterable[Rule]) -> Iterable[Condition]:
    for rule in rules:
        yield from rule.conditions
        for group in rule.condition_groups:
            yield from group.conditions


def user_sensitive(rules: Iterable[Rule]) -> bool:
    """Whether a user could change these rules' outcome (user or user-trait conditions)."""
    for cond in _conditions(rules):
        if cond.condition_type == "user":
            return True
        if cond.condition_type == "trait" and (
            cond.trait_definition is not None and cond.trait_definition.entity_type == "user"
        ):
            return True
    return False


def metric_periods(rules: Iterable[Rule]) -> frozenset[PeriodKey]:
    """The (period, month reset) pairs the rules' metric conditions consult."""
    return frozenset(
        (c.metric_period, c.metric_period_month_reset)
        for c in _conditions(rules)
        if c.condition_type == "metric"
    )


Scope = tuple[str, frozenset[str]] | None


def rule_scope(rule: Rule) -> Scope:
    """``(kind, ids)`` when the rule's first condition is a plan or plan-version ``eq``.

    Such a rule cannot match a company on none of those ids: its first condition fails
    before any other is evaluated, so skipping it changes nothing (errors included).
    """
    if rule.rule_type in ("default", "global_override") or not rule.conditions:
        return None
    first = rule.conditions[0]
    if first.id and first.operator == "eq" and first.condition_type in ("plan", "plan_version"):
        return first.condition_type, frozenset(first.resource_ids)
    return None


@dataclass(slots=True, frozen=True)
class FlagPlan:
    """What a snapshot needs to know about one flag, independent of any company."""

    flag: Flag
    ordered: tuple[Rule, ...]
    user_sensitive: bool
    periods: frozenset[PeriodKey]
    scopes: tuple[Scope, ...]  # aligned with ``ordered``
    _memo: dict[tuple[frozenset[str], frozenset[str]], list[Rule]] = field(
        default_factory=dict, compare=False, repr=False
    )

    @classmethod
    def of(cls, flag: Flag) -> FlagPlan:
        ordered = tuple(order_rules(flag.rules))
        return cls(
            flag,
            ordered,
            user_sensitive(flag.rules),
            metric_periods(flag.rules),
            tuple(rule_scope(r) for r in ordered),
        )

    def rules_for(self, plan_ids: frozenset[str], version_ids: frozenset[str]) -> list[Rule]:
        """The ordered rules that could match a company on these plans and versions (memoised:
        most companies share a handful of plan combinations)."""
        key = (plan_ids, version_ids)
        found = self._memo.get(key)
        if found is None:
            if len(self._memo) > 4096:
                self._memo.clear()
            found = self._memo[key] = [
                rule
                for rule, scope in zip(self.ordered, self.scopes, strict=True)
                if scope is None or not scope[1].isdisjoint(plan_ids if scope[0] == "plan" else version_ids)
            ]
        return found


def plan_flags(flags: Iterable[Flag]) -> tuple[FlagPlan, ...]:
    return tuple(FlagPlan.of(f) for f in flags)


@dataclass(slots=True, frozen=True)
class CompanySnapshot:
    company: Company
    results: Mapping[str, CheckFlagResult]  # by flag key
    user_sensitive: frozenset[str]  # flag keys a user's conditions/traits could change
    valid_until: float  # epoch seconds; math.inf when nothing time-dependent applies
    computed_at: dt.datetime


def _resets(
    periods: Iterable[PeriodKey],
    sub: Subscription | None,
    now: dt.datetime,
    memo: dict[PeriodKey, dt.datetime | None],
) -> Iterable[dt.datetime]:
    for key in periods:
        if key not in memo:
            memo[key] = next_reset(key[0], key[1], sub, now)
        value = memo[key]
        if value is not None:
            yield value


def build_snapshot(
    company: Company,
    flags: Iterable[Flag] | Sequence[FlagPlan],
    now: dt.datetime,
    boundaries: Iterable[dt.datetime] = (),
) -> CompanySnapshot:
    """Evaluate every flag for the company at ``now``.

    ``flags`` may be plain flags or precomputed ``FlagPlan``s (faster for many companies).
    ``boundaries`` are extra instants after which the results must be recomputed (override
    expiries, trial ends...); past ones are ignored.
    """
    plans = [f if isinstance(f, FlagPlan) else FlagPlan.of(f) for f in flags]
    results: dict[str, CheckFlagResult] = {}
    sensitive: set[str] = set()
    limits: set[dt.datetime] = {b for b in boundaries if b > now}
    sub = company.subscription
    if sub is not None:
        # Billing anchors move when the subscription period starts or ends.
        limits.update(t for t in (sub.period_start, sub.period_end) if t > now)
    memo: dict[PeriodKey, dt.datetime | None] = {}
    by_flag: dict[str, list[Rule]] = {}
    for rule in company.rules:
        if rule.flag_id:
            by_flag.setdefault(rule.flag_id, []).append(rule)
    plan_ids, version_ids = frozenset(company.plan_ids), frozenset(company.plan_version_ids)
    for plan in plans:
        flag = plan.flag
        results[flag.key] = check_flag(
            flag, company, None, None, now, ordered_flag_rules=plan.rules_for(plan_ids, version_ids)
        )
        extra = by_flag.get(flag.id, ())
        if plan.user_sensitive or (extra and user_sensitive(extra)):
            sensitive.add(flag.key)
        limits.update(_resets(plan.periods, sub, now, memo))
        if extra:
            limits.update(_resets(metric_periods(extra), sub, now, memo))
    valid_until = min(limits).timestamp() if limits else math.inf
    return CompanySnapshot(
        company=company,
        results=MappingProxyType(results),
        user_sensitive=frozenset(sensitive),
        valid_until=valid_until,
        computed_at=now,
    )
