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
from dataclasses import dataclass
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


@dataclass(slots=True, frozen=True)
class FlagPlan:
    """What a snapshot needs to know about one flag, independent of any company."""

    flag: Flag
    ordered: tuple[Rule, ...]
    user_sensitive: bool
    periods: frozenset[PeriodKey]

    @classmethod
    def of(cls, flag: Flag) -> FlagPlan:
        return cls(
            flag, tuple(order_rules(flag.rules)), user_sensitive(flag.rules), metric_periods(flag.rules)
        )


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
    for plan in plans:
        flag = plan.flag
        results[flag.key] = check_flag(flag, company, None, None, now, ordered_flag_rules=plan.ordered)
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
