"""Hypothesis strategies for rules-engine inputs: flags, companies, users, preflight, instants.

Hypothesis supplies the entropy (``st.randoms``, deterministic under ``derandomize=True``) and a
plain builder turns it into wire objects. Drawing every field through Hypothesis costs ~60 ms
per case for structures this deep; the builder costs well under 1 ms, which is what lets the
differential suite run 10,000+ cases in CI.

Identifiers come from small pools so that conditions hit (and miss) often; values are biased
towards boundaries (limits equal to usage, dates on month ends and Sundays, anchors on the
29th-31st) because that is where engines disagree.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from typing import Any, TypeVar

from hypothesis import strategies as st

from syncd.engine.wire import (
    Company,
    CompanyMetric,
    Condition,
    ConditionGroup,
    CreditPostpaid,
    EventUsage,
    FeatureEntitlement,
    Flag,
    Preflight,
    Rule,
    Subscription,
    Trait,
    TraitDefinition,
    User,
)

T = TypeVar("T")
UTC = dt.UTC
FLAG_ID = "flag_1"
FLAG_KEY = "feature-a"
PLANS = ["plan_a", "plan_b", "plan_c"]
VERSIONS = ["ver_a1", "ver_a2", "ver_b1"]
PRODUCTS = ["prod_1", "prod_2"]
COMPANIES = ["co_1", "co_2"]
USERS = ["user_1", "user_2"]
EVENTS = ["api_calls", "exports"]
CREDITS = ["cred_1", "cred_2"]
PERIODS = [None, "all_time", "current_day", "current_week", "current_month"]
RESETS = [None, "first_of_month", "billing_cycle"]
RULE_TYPES = [
    "global_override",
    "company_override",
    "company_override_usage_exceeded",
    "plan_entitlement",
    "plan_entitlement_usage_exceeded",
    "standard",
    "default",
]
OPERATORS = ["eq", "ne", "gt", "lt", "gte", "lte", "is_empty", "not_empty"]
CONDITION_KINDS = [
    "company",
    "user",
    "plan",
    "plan_version",
    "billing_product",
    "base_plan",
    "metric",
    "metric",
    "trait",
    "trait",
    "trait",
    "credit",
]
CTYPES = ["int", "string", "bool", "date"]
TRAIT_IDS = {"t_int": "int", "t_str": "string", "t_bool": "bool", "t_date": "date"}

# Instants the engines are evaluated at: month ends, leap day, a Sunday midnight, anchors.
NOWS = [
    dt.datetime(2025, 3, 1, 0, 0, tzinfo=UTC),
    dt.datetime(2025, 2, 28, 23, 59, 59, tzinfo=UTC),
    dt.datetime(2024, 2, 29, 12, 0, tzinfo=UTC),
    dt.datetime(2025, 6, 15, 0, 0, tzinfo=UTC),  # a Sunday, exactly midnight
    dt.datetime(2025, 6, 14, 23, 59, 59, 999000, tzinfo=UTC),  # Saturday, last millisecond
    dt.datetime(2025, 12, 31, 10, 0, tzinfo=UTC),
    dt.datetime(2025, 4, 30, 10, 0, tzinfo=UTC),
    dt.datetime(2026, 1, 31, 9, 30, 15, tzinfo=UTC),
    dt.datetime(2025, 1, 31, 10, 0, tzinfo=UTC),
]

INT_VALUES = [
    "0",
    "1",
    "5",
    "10",
    "-3",
    "1.5",
    "1e3",
    " 12",
    "abc",
    "",
    "+7",
    "99",
    "100",
    "9223372036854775808",
    "nan",
    "inf",
    ".5",
    "007",
    "12abc",
    "1_000",
]
BOOL_VALUES = ["true", "false", "1", "0", "TRUE", "True", "yes", ""]
STRING_VALUES = ["", "a", "b", "abc", "ABC", "pro", "é", "10", "2"]
DATE_INSTANTS = [
    dt.datetime(2024, 1, 2, 0, 0, tzinfo=UTC),
    dt.datetime(2024, 1, 2, 0, 0, 0, 500000, tzinfo=UTC),
    dt.datetime(2024, 2, 29, 23, 59, 59, tzinfo=UTC),
    dt.datetime(2025, 6, 15, 12, 30, tzinfo=UTC),
    dt.datetime(2025, 6, 15, 12, 30, 0, 123000, tzinfo=UTC),
]
ODD_DATES = [
    "",
    "not a date",
    "2024-02-30T00:00:00Z",
    "tue jan 02 2024 00:00:00 gmt+0100",
    "Wed Jan 02 2024 00:00:00 UTC",
    "2024-01-02t00:00:00z",
    "2024-01-02 03:04:05+01:00",
    "2024-01-02T00:00:00+24:00",
    "Mon Jan 1 2024 16:00:00 GMT-08:00",
    "2024-01-02 0:0:0 UTC",
    "2024-01-02T03:04:05.6+0200",
    "2024-01-02T03:04:05.6789123456Z",
    "2016-12-31T23:59:60Z",
    "2024-01-02 00:00:00 UTC extra",
    "Mon Jan 01 2024 16:00:00 GMT+08",
    "+2024-01-02 00:00:00",
]


def date_text(rng: random.Random, instant: dt.datetime) -> str:
    """One instant written in one of the layouts seen in the wild (JS, RFC 3339, SQL...)."""
    layout = rng.randrange(12)
    ms = f"{instant.microsecond // 1000:03d}"
    if layout == 0:
        return instant.strftime("%Y-%m-%dT%H:%M:%SZ")
    if layout == 1:
        return instant.strftime("%Y-%m-%dT%H:%M:%S.") + ms + "Z"
    if layout == 2:
        return (instant + dt.timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S+02:00")
    if layout == 3:
        return instant.strftime("%Y-%m-%d")  # date only: the engine never parses it
    if layout == 4:
        return instant.strftime("%Y-%m-%d %H:%M:%S ") + rng.choice(["UTC", "PST", "GMT", "Z"])
    if layout == 5:
        return (instant - dt.timedelta(hours=8)).strftime("%a %b %d %Y %H:%M:%S GMT-0800")
    if layout == 6:
        name = rng.choice(["Coordinated Universal Time", "Pacific Standard Time"])
        return instant.strftime("%a %b %d %Y %H:%M:%S GMT+0000 (") + name + ")"
    if layout == 7:
        return instant.strftime("%a %b %d %Y %H:%M:%S ") + rng.choice(["PST", "EST", "UTC"])
    if layout == 8:
        shifted = instant + dt.timedelta(hours=1)
        return shifted.strftime("%Y-%m-%dT%H:%M:%S.") + ms + "+0100"
    if layout == 9:
        return instant.strftime("%Y-%m-%d %H:%M:%S")
    if layout == 10:
        return instant.strftime("%Y-%m-%dT%H:%M:%S.%f") + "789+00:00"
    return rng.choice(ODD_DATES)


class Builder:
    """Builds wire objects from a seeded RNG, with every choice biased towards edge cases."""

    def __init__(self, rng: random.Random, now: dt.datetime) -> None:
        self.r = rng
        self.now = now

    def pick(self, items: list[T]) -> T:
        return items[self.r.randrange(len(items))]

    def maybe(self, make: Callable[[], T], p_none: float = 0.5) -> T | None:
        return None if self.r.random() < p_none else make()

    def some(self, items: list[T], max_size: int) -> list[T]:
        return self.r.sample(items, self.r.randint(0, min(max_size, len(items))))

    def many(self, make: Callable[[], T], max_size: int) -> list[T]:
        return [make() for _ in range(self.r.randint(0, max_size))]

    # -- time ----------------------------------------------------------------------------
    def instant(self) -> dt.datetime:
        kind = self.r.randrange(3)
        if kind == 0:  # anchors on month ends and mid-month
            year, month = self.r.randint(2023, 2026), self.r.randint(1, 12)
            last = 28 if month == 2 else 30 if month in (4, 6, 9, 11) else 31
            day = min(self.pick([1, 15, 28, 29, 30, 31]), last)
            return dt.datetime(year, month, day, self.pick([0, 10, 23]), tzinfo=UTC)
        if kind == 1:
            return self.now + dt.timedelta(seconds=self.r.randint(-90 * 86400, 90 * 86400))
        return self.now

    # -- traits --------------------------------------------------------------------------
    def trait_value(self, ctype: str) -> str:
        if ctype == "int":
            if self.r.random() < 0.5:
                return str(self.r.randint(-5, 120))
            return self.pick(INT_VALUES)
        if ctype == "bool":
            return self.pick(BOOL_VALUES)
        if ctype == "date":
            return date_text(self.r, self.pick(DATE_INSTANTS))
        return self.pick(STRING_VALUES)

    def trait_def(self) -> TraitDefinition:
        tid = self.pick(list(TRAIT_IDS)) if self.r.random() < 0.97 else ""
        # Usually the canonical type, sometimes a condition that disagrees with the store.
        ctype = TRAIT_IDS.get(tid, "string") if self.r.random() < 0.7 else self.pick(CTYPES)
        return TraitDefinition(tid, ctype, self.pick(["company", "user"]))

    def traits(self, entity: str) -> list[Trait]:
        out = []
        for tid, ctype in TRAIT_IDS.items():
            if self.r.random() < 0.7:
                out.append(Trait(self.trait_value(ctype), TraitDefinition(tid, ctype, entity)))
        if self.r.random() < 0.05:
            out.append(Trait(self.pick(STRING_VALUES), TraitDefinition("", "string", entity)))
        if self.r.random() < 0.1:
            out.append(Trait("orphan", None))
        return out

    # -- conditions and rules ------------------------------------------------------------
    def condition(self) -> Condition:
        kind = self.pick(CONDITION_KINDS)
        op = self.pick(OPERATORS)
        c = Condition(kind, op, id=f"cond_{kind}" if self.r.random() < 0.97 else "")
        if kind in ("company", "user", "plan", "plan_version", "billing_product", "base_plan"):
            pool = {
                "company": COMPANIES,
                "user": USERS,
                "plan": PLANS,
                "plan_version": VERSIONS,
                "billing_product": PRODUCTS,
                "base_plan": PLANS,
            }[kind]
            c.resource_ids = self.some(pool, 2)
        elif kind == "metric":
            c.event_subtype = self.pick(EVENTS) if self.r.random() < 0.95 else None
            c.metric_value = self.r.randint(0, 120) if self.r.random() < 0.92 else None
            c.metric_period = self.pick(PERIODS)
            c.metric_period_month_reset = self.pick(RESETS)
            c.comparison_trait_definition = self.maybe(self.trait_def, 0.8)
        elif kind == "trait":
            c.trait_definition = self.trait_def() if self.r.random() < 0.95 else None
            ctype = c.trait_definition.comparable_type if c.trait_definition else "string"
            c.trait_value = self.trait_value(ctype)
            c.comparison_trait_definition = self.maybe(self.trait_def, 0.8)
        else:
            c.credit_id = self.pick(CREDITS) if self.r.random() < 0.9 else None
            c.consumption_rate = self.maybe(lambda: self.pick([0.0, 0.5, 1.0, 2.0, 10.0]))
            c.event_subtype = self.maybe(lambda: self.pick(EVENTS))
        return c

    def rule(self, flag_ids: list[str | None]) -> Rule:
        return Rule(
            id=self.pick(["rule_1", "rule_2", "rule_3", "rule_4", "rule_5"])
            if self.r.random() < 0.97
            else "",
            rule_type=self.pick(RULE_TYPES),
            value=self.r.random() < 0.5,
            name=self.pick(["Pro", "Free plan", "", 'Beta "quoted"']),
            priority=self.r.randint(-2, 3),
            conditions=self.many(self.condition, 3),
            condition_groups=self.many(lambda: ConditionGroup(self.many(self.condition, 2)), 2),
            flag_id=self.pick(flag_ids),
        )

    def flag(self) -> Flag:
        return Flag(
            id=FLAG_ID if self.r.random() < 0.98 else "",
            key=FLAG_KEY,
            default_value=self.r.random() < 0.5,
            rules=self.many(lambda: self.rule([None, FLAG_ID]), 6),
        )

    # -- companies, users, preflight -----------------------------------------------------
    def metric(self) -> CompanyMetric:
        return CompanyMetric(
            event_subtype=self.pick(EVENTS),
            period=self.pick(PERIODS[1:]),
            month_reset=self.pick(RESETS[1:]),
            value=self.pick([0, 99, 100, 101]) if self.r.random() < 0.3 else self.r.randint(0, 120),
            company_id="co_1",
            created_at=self.now - dt.timedelta(days=3),
        )

    def entitlement(self) -> FeatureEntitlement:
        return FeatureEntitlement(
            feature_id="feat_1",
            feature_key=self.pick([FLAG_KEY, FLAG_KEY, "other-feature"]),
            value_type=self.pick(["boolean", "numeric", "unlimited", "credit", "trait"]),
            allocation=self.maybe(lambda: self.r.randint(0, 200)),
            usage=self.maybe(lambda: self.r.randint(0, 200)),
            event_subtype=self.maybe(lambda: self.pick(EVENTS)),
            metric_period=self.pick(PERIODS),
        )

    def subscription(self) -> Subscription:
        start = self.instant()
        days = self.pick([1, 28, 30, 31, 365, 400])
        end = start + dt.timedelta(days=days, seconds=self.pick([0, 0, 3600, -60]))
        return Subscription("sub_1", start, end)

    def company(self) -> Company:
        return Company(
            id=self.pick(COMPANIES) if self.r.random() < 0.97 else "",
            keys={"stripe_customer_id": "cus_1"},
            base_plan_id=self.maybe(lambda: self.pick(PLANS), 0.3),
            plan_ids=self.some(PLANS, 3),
            plan_version_ids=self.some(VERSIONS, 3),
            billing_product_ids=self.some(PRODUCTS, 2),
            credit_balances={
                c: self.pick([0.0, 0.5, 1.0, 2.0, 5.0, 20.0, 100.0]) for c in self.some(CREDITS, 2)
            },
            entitlements=self.many(self.entitlement, 2),
            metrics=self.many(self.metric, 6),
            rules=self.many(lambda: self.rule([FLAG_ID, FLAG_ID, "flag_other", None]), 3),
            subscription=self.maybe(self.subscription, 0.3),
            traits=self.traits("company"),
            credit_postpaid={
                c: CreditPostpaid(self.pick([None, 0.0, 3.0, 50.0]))
                for c in (self.some(CREDITS, 1) if self.r.random() < 0.15 else [])
            },
        )

    def user(self) -> User:
        return User(
            id=self.pick(USERS) if self.r.random() < 0.97 else "",
            keys={"email": "a@example.com"},
            traits=self.traits("user"),
            rules=self.many(lambda: self.rule([FLAG_ID, "flag_other", None]), 2),
        )

    def preflight(self) -> Preflight:
        return Preflight(
            usage=self.maybe(lambda: self.r.randint(-1, 60)),
            event_usage=self.maybe(lambda: EventUsage(self.pick(EVENTS), self.r.randint(-1, 60))),
            credit_cost=self.maybe(
                lambda: {c: self.pick([-1.0, 0.0, 1.0, 3.5, 50.0]) for c in self.some(CREDITS, 2)}
            ),
        )


Case = tuple[Flag, Company | None, User | None, Preflight | None, dt.datetime]


def build_case(rng: random.Random) -> Case:
    b = Builder(rng, rng.choice(NOWS))
    flag = b.flag()
    company = b.company() if rng.random() < 0.8 else None
    user = b.user() if rng.random() < 0.5 else None
    preflight = b.preflight() if rng.random() < 0.35 else None
    return flag, company, user, preflight, b.now


def _from(make: Callable[[Builder], Any]) -> st.SearchStrategy[Any]:
    return st.randoms(use_true_random=True).map(lambda r: make(Builder(r, r.choice(NOWS))))


def cases() -> st.SearchStrategy[Case]:
    """A whole evaluation: flag, optional company, user and preflight, and the instant."""
    return st.randoms(use_true_random=True).map(build_case)


def flags() -> st.SearchStrategy[Flag]:
    return _from(lambda b: b.flag())


def companies() -> st.SearchStrategy[Company]:
    return _from(lambda b: b.company())


def users() -> st.SearchStrategy[User]:
    return _from(lambda b: b.user())


def preflights() -> st.SearchStrategy[Preflight]:
    return _from(lambda b: b.preflight())
