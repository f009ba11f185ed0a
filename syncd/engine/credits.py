"""Credit grants, burn order, consumption and balances: pure functions over plain data.

Consumption follows Schematic's documented rules: adjustment grants burn first, then rollover
grants, under every strategy; the rest follow the burn strategy. Each consumption draws its
full amount from one grant (the first in burn order that still has credit), so a grant can be
overdrawn; the next consumption moves on to the next grant. The overdraft stays on the grant,
so the total balance is always exact. Nothing here mutates its inputs: callers get new grant
states plus ledger entries to persist.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from syncd.engine.periods import UTC

STRATEGIES = (
    "plan_first_then_credit_bundles_first_in_first_out",
    "first_in_first_out",
    "last_in_first_out",
    "expiration_priority",
)
DEFAULT_STRATEGY = STRATEGIES[0]
ADJUSTMENT_TTL = dt.timedelta(days=365)
_FAR = dt.datetime.max.replace(tzinfo=UTC)


@dataclass(slots=True, frozen=True)
class CreditGrant:
    id: str
    company_id: str
    credit_id: str
    reason: str  # plan | purchased | adjustment | rollover | free | billing_credit_auto_topup
    amount: float  # granted quantity
    granted_at: dt.datetime
    expires_at: dt.datetime | None = None
    remaining: float | None = None  # None: untouched (the full amount)
    source_grant_id: str | None = None

    @property
    def balance(self) -> float:
        return self.amount if self.remaining is None else self.remaining

    def active(self, now: dt.datetime) -> bool:
        return self.granted_at <= now and (self.expires_at is None or self.expires_at > now)


@dataclass(slots=True, frozen=True)
class LedgerEntry:
    """One movement of credit. ``amount`` > 0 draws credit; < 0 returns it (a refund)."""

    company_id: str
    credit_id: str
    grant_id: str | None  # None: consumption no grant could fund (recorded in full)
    amount: float
    reason: str  # track | adjustment | rollover | expiry | grant
    at: dt.datetime


@dataclass(slots=True, frozen=True)
class CreditBalance:
    remaining: float
    reserved: float = 0.0

    @property
    def settled(self) -> float:
        return self.remaining + self.reserved


def _class(grant: CreditGrant) -> int:
    return {"adjustment": 0, "rollover": 1}.get(grant.reason, 2)


def burn_order(
    grants: Iterable[CreditGrant], now: dt.datetime, strategy: str = DEFAULT_STRATEGY
) -> list[CreditGrant]:
    """Active grants in the order consumption draws from them."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown burn strategy {strategy!r}")
    live = [g for g in grants if g.active(now)]

    def key(g: CreditGrant) -> tuple[int, int, float, float]:
        cls = _class(g)
        ts = g.granted_at.timestamp()
        if cls < 2:
            return (cls, 0, ts, 0.0)
        if strategy == DEFAULT_STRATEGY:
            return (cls, 0 if g.reason == "plan" else 1, ts, 0.0)
        if strategy == "last_in_first_out":
            return (cls, 0, -ts, 0.0)
        if strategy == "expiration_priority":
            return (cls, 0, (g.expires_at or _FAR).timestamp(), ts)
        return (cls, 0, ts, 0.0)

    return sorted(live, key=key)


def balance(grants: Iterable[CreditGrant], now: dt.datetime, credit_id: str) -> CreditBalance:
    """Drawable credit at ``now`` (overdrafts included, expired grants excluded)."""
    total = sum(g.balance for g in grants if g.credit_id == credit_id and g.active(now))
    return CreditBalance(remaining=total)


def consume(
    grants: Sequence[CreditGrant],
    company_id: str,
    credit_id: str,
    quantity: float,
    now: dt.datetime,
    *,
    consumption_rate: float = 1.0,
    strategy: str = DEFAULT_STRATEGY,
    adjustment_id: str = "adjustment",
) -> tuple[list[CreditGrant], list[LedgerEntry]]:
    """Apply one tracked usage of ``quantity`` units; returns new grants and ledger entries.

    A negative quantity is a refund: ``-quantity * rate`` goes into the company's adjustment
    grant for this credit (created, or topped up with its one-year expiry renewed).
    """
    cost = quantity * consumption_rate
    out = list(grants)
    if cost < 0:
        return _refund(out, company_id, credit_id, -cost, now, adjustment_id)
    if cost == 0:
        return out, []
    mine = [g for g in burn_order(out, now, strategy) if g.credit_id == credit_id]
    target = next((g for g in mine if g.balance > 0), None)
    if target is None:
        return out, [LedgerEntry(company_id, credit_id, None, cost, "track", now)]
    drawn = replace(target, remaining=target.balance - cost)
    out[out.index(target)] = drawn
    return out, [LedgerEntry(company_id, credit_id, target.id, cost, "track", now)]


def _refund(
    grants: list[CreditGrant],
    company_id: str,
    credit_id: str,
    amount: float,
    now: dt.datetime,
    adjustment_id: str,
) -> tuple[list[CreditGrant], list[LedgerEntry]]:
    for i, g in enumerate(grants):
        if g.reason == "adjustment" and g.credit_id == credit_id and g.active(now):
            grants[i] = replace(
                g,
                amount=g.amount + amount,
                remaining=g.balance + amount,
                expires_at=now + ADJUSTMENT_TTL,
            )
            return grants, [LedgerEntry(company_id, credit_id, g.id, -amount, "adjustment", now)]
    grant = CreditGrant(adjustment_id, company_id, credit_id, "adjustment", amount, now, now + ADJUSTMENT_TTL)
    grants.append(grant)
    return grants, [LedgerEntry(company_id, credit_id, grant.id, -amount, "adjustment", now)]


# --- plan grants: resets and rollover ------------------------------------------------------

CADENCE_MONTHS = {"monthly": 1, "quarterly": 3, "yearly": 12}


@dataclass(slots=True, frozen=True)
class PlanCreditConfig:
    credit_id: str
    credit_amount: float
    reset_type: str = "plan_period"  # plan_period | no_reset
    reset_cadence: str = "monthly"  # daily | weekly | monthly | quarterly | yearly
    reset_start: str = "billing_period"  # billing_period | first_of_month
    rollover_percentage: int = 0  # 0-100, monthly/quarterly/yearly only


def _add_months(ts: dt.datetime, months: int, anchor_day: int) -> dt.datetime:
    index = ts.year * 12 + ts.month - 1 + months
    year, month = index // 12, index % 12 + 1
    day = min(anchor_day, calendar.monthrange(year, month)[1])  # clamp 29th-31st
    return ts.replace(year=year, month=month, day=day)


def next_grant_reset(config: PlanCreditConfig, anchor: dt.datetime, now: dt.datetime) -> dt.datetime | None:
    """The first reset strictly after ``now``.

    Daily and weekly cadences always run from enrollment (``anchor``); longer ones from the
    billing anchor or from the first of the month.
    """
    if config.reset_type == "no_reset":
        return None
    if config.reset_cadence in ("daily", "weekly"):
        step = dt.timedelta(days=1 if config.reset_cadence == "daily" else 7)
        if now < anchor:
            return anchor
        return anchor + step * ((now - anchor) // step + 1)
    months = CADENCE_MONTHS[config.reset_cadence]
    if config.reset_start == "first_of_month":
        anchor = anchor.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    if now < anchor:
        return anchor
    elapsed = (now.year - anchor.year) * 12 + now.month - anchor.month
    k = max(elapsed // months, 0)
    candidate = _add_months(anchor, k * months, anchor.day)
    while candidate <= now:
        k += 1
        candidate = _add_months(anchor, k * months, anchor.day)
    return candidate


def issue_plan_grant(
    config: PlanCreditConfig,
    company_id: str,
    grant_id: str,
    anchor: dt.datetime,
    now: dt.datetime,
    previous: CreditGrant | None = None,
) -> tuple[list[CreditGrant], list[LedgerEntry]]:
    """The grants a plan reset produces at ``now``: a fresh plan grant that expires at the next
    reset and, when configured, a rollover grant of the previous grant's unused percentage
    that also expires at the next reset."""
    expires = next_grant_reset(config, anchor, now)
    out = [CreditGrant(grant_id, company_id, config.credit_id, "plan", config.credit_amount, now, expires)]
    ledger = [LedgerEntry(company_id, config.credit_id, grant_id, -config.credit_amount, "grant", now)]
    can_roll = config.reset_cadence in CADENCE_MONTHS and config.rollover_percentage > 0
    if previous is not None and can_roll and previous.balance > 0:
        amount = previous.balance * config.rollover_percentage / 100
        roll = CreditGrant(
            f"{grant_id}_rollover",
            company_id,
            config.credit_id,
            "rollover",
            amount,
            now,
            expires,
            source_grant_id=previous.id,
        )
        out.append(roll)
        ledger.append(LedgerEntry(company_id, config.credit_id, roll.id, -amount, "rollover", now))
    return out, ledger


def one_time_expiry(
    expiry_type: str,
    granted_at: dt.datetime,
    *,
    unit: str = "days",
    count: int = 0,
    billing_period_end: dt.datetime | None = None,
    billing_period_length: dt.timedelta | None = None,
    trial_end: dt.datetime | None = None,
) -> dt.datetime | None:
    """Expiry of a purchased or one-off grant (``expiry_type`` as Schematic configures it)."""
    if expiry_type == "no_expiry":
        return None
    if expiry_type == "duration":
        if unit == "billing_periods" and billing_period_length is not None:
            return granted_at + billing_period_length * count
        return granted_at + dt.timedelta(days=count)
    if expiry_type == "end_of_billing_period":
        return billing_period_end
    if expiry_type == "end_of_next_billing_period":
        if billing_period_end is None or billing_period_length is None:
            return None
        return billing_period_end + billing_period_length
    if expiry_type == "end_of_trial":
        return trial_end
    raise ValueError(f"unknown expiry_type {expiry_type!r}")
