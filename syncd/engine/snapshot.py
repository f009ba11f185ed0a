"""Per-company compiled snapshots: every flag's result precomputed, valid until a boundary.

A snapshot holds the result of ``check_flag(flag, company)`` (no user, no preflight) for every
flag, and the instant until which those results stay true. Results only change when an input
changes (company, flags) or when time crosses a boundary: the next metric period reset any
metric condition looks at (the reported reset time moves, and the server's counters roll over)
or a boundary the caller knows about (an override's expiry, a trial's end).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from syncd.engine.flagcheck import check_flag
from syncd.engine.periods import next_reset
from syncd.engine.wire import CheckFlagResult, Company, Condition, Flag, Rule


def _conditions(rules: Iterable[Rule]) -> Iterable[Condition]:
    for rule in rules:
        yield from rule.conditions
        for group in rule.condition_groups:
            yield from group.conditions


def _company_rules(company: Company, flag: Flag) -> list[Rule]:
    return [r for r in company.rules if r.flag_id is not None and r.flag_id == flag.id]


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


def time_boundaries(rules: Iterable[Rule], company: Company, now: dt.datetime) -> set[dt.datetime]:
    """Next resets of every metric period the rules consult."""
    seen: set[tuple[str | None, str | None]] = set()
    out: set[dt.datetime] = set()
    for cond in _conditions(rules):
        if cond.condition_type != "metric":
            continue
        key = (cond.metric_period, cond.metric_period_month_reset)
        if key in seen:
            continue
        seen.add(key)
        nxt = next_reset(cond.metric_period, cond.metric_period_month_reset, company.subscription, now)
        if nxt is not None:
            out.add(nxt)
    return out


@dataclass(slots=True, frozen=True)
class CompanySnapshot:
    company: Company
    results: Mapping[str, CheckFlagResult]  # by flag key
    user_sensitive: frozenset[str]  # flag keys a user's conditions/traits could change
    valid_until: float  # epoch seconds; math.inf when nothing time-dependent applies
    computed_at: dt.datetime


def build_snapshot(
    company: Company,
    flags: Iterable[Flag],
    now: dt.datetime,
    boundaries: Iterable[dt.datetime] = (),
) -> CompanySnapshot:
    """Evaluate every flag for the company at ``now``.

    ``boundaries`` are extra instants after which the results must be recomputed (override
    expiries, trial ends...); past ones are ignored.
    """
    results: dict[str, CheckFlagResult] = {}
    sensitive: set[str] = set()
    limits: set[dt.datetime] = {b for b in boundaries if b > now}
    if company.subscription is not None:
        # Billing anchors move when the subscription period starts or ends.
        limits.update(
            t for t in (company.subscription.period_start, company.subscription.period_end) if t > now
        )
    for flag in flags:
        rules = flag.rules + _company_rules(company, flag)
        results[flag.key] = check_flag(flag, company, None, None, now)
        if user_sensitive(rules):
            sensitive.add(flag.key)
        limits |= time_boundaries(rules, company, now)
    valid_until = min(limits).timestamp() if limits else math.inf
    return CompanySnapshot(
        company=company,
        results=MappingProxyType(results),
        user_sensitive=frozenset(sensitive),
        valid_until=valid_until,
        computed_at=now,
    )
