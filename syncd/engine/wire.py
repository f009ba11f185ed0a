"""The rules-engine wire model: slotted dataclasses with exact snake_case JSON.

The shapes mirror Schematic's rules-engine models (Flag, Rule, Company, ...), so the JSON that
``to_wire()`` produces is what the official WASM engine and a Schematic replicator's Redis hold.
Lists are always ``[]`` on the wire, never ``null``: the engine rejects ``null`` collections.
Optional scalars are omitted when unset rather than sent as ``null`` for the same reason.
Flags, rules, conditions and traits live in ``wire_rules`` and are re-exported here; this
module adds companies, users, metrics, entitlements, preflight and results.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from syncd.engine.wire_rules import (
    COMPARABLE_TYPES,
    CONDITION_TYPES,
    ENGINE_VERSION_KEY,
    ENTITY_TYPES,
    JSON,
    METRIC_PERIODS,
    MONTH_RESETS,
    OPERATORS,
    RULE_TYPES,
    UTC,
    VALUE_TYPES,
    Condition,
    ConditionGroup,
    Flag,
    Rule,
    Trait,
    TraitDefinition,
    _opt_ts,
    _put,
    format_ts,
    parse_ts,
)

__all__ = [
    "COMPARABLE_TYPES",
    "CONDITION_TYPES",
    "ENGINE_VERSION_KEY",
    "ENTITY_TYPES",
    "JSON",
    "METRIC_PERIODS",
    "MONTH_RESETS",
    "OPERATORS",
    "RULE_TYPES",
    "UTC",
    "VALUE_TYPES",
    "CheckFlagResult",
    "Company",
    "CompanyMetric",
    "Condition",
    "ConditionGroup",
    "CreditPostpaid",
    "EventUsage",
    "FeatureEntitlement",
    "Flag",
    "Preflight",
    "Rule",
    "Subscription",
    "Trait",
    "TraitDefinition",
    "User",
    "WarningTier",
    "format_ts",
    "parse_ts",
]


@dataclass(slots=True)
class CompanyMetric:
    event_subtype: str
    period: str = "all_time"
    month_reset: str = "first_of_month"
    value: int = 0
    company_id: str = ""
    account_id: str = ""
    environment_id: str = ""
    created_at: dt.datetime = field(default_factory=lambda: dt.datetime(1970, 1, 1, tzinfo=UTC))
    valid_until: dt.datetime | None = None

    def to_wire(self) -> JSON:
        out: JSON = {
            "account_id": self.account_id,
            "environment_id": self.environment_id,
            "company_id": self.company_id,
            "event_subtype": self.event_subtype,
            "period": self.period,
            "month_reset": self.month_reset,
            "value": self.value,
            "created_at": format_ts(self.created_at),
        }
        if self.valid_until is not None:
            out["valid_until"] = format_ts(self.valid_until)
        return out

    @classmethod
    def from_wire(cls, data: JSON) -> CompanyMetric:
        return cls(
            event_subtype=data["event_subtype"],
            period=data.get("period") or "all_time",
            month_reset=data.get("month_reset") or "first_of_month",
            value=int(data.get("value", 0)),
            company_id=data.get("company_id", ""),
            account_id=data.get("account_id", ""),
            environment_id=data.get("environment_id", ""),
            created_at=parse_ts(data.get("created_at") or "1970-01-01T00:00:00Z"),
            valid_until=_opt_ts(data.get("valid_until")),
        )


@dataclass(slots=True)
class Subscription:
    id: str
    period_start: dt.datetime
    period_end: dt.datetime

    def to_wire(self) -> JSON:
        return {
            "id": self.id,
            "period_start": format_ts(self.period_start),
            "period_end": format_ts(self.period_end),
        }

    @classmethod
    def from_wire(cls, data: JSON) -> Subscription:
        return cls(data["id"], parse_ts(data["period_start"]), parse_ts(data["period_end"]))


@dataclass(slots=True, frozen=True)
class WarningTier:
    key: str
    value: int


# FeatureEntitlement's optional fields, in wire order; used by to_wire/from_wire.
_ENT_OPTIONAL = (
    "allocation",
    "usage",
    "soft_limit",
    "event_name",
    "event_subtype",
    "metric_period",
    "month_reset",
    "credit_id",
    "credit_total",
    "credit_used",
    "credit_remaining",
    "credit_reserved",
    "credit_settled",
    "consumption_rate",
)


@dataclass(slots=True)
class FeatureEntitlement:
    feature_id: str
    feature_key: str
    value_type: str
    allocation: int | None = None
    usage: int | None = None
    soft_limit: int | None = None
    event_name: str | None = None
    event_subtype: str | None = None
    metric_period: str | None = None
    month_reset: str | None = None
    metric_reset_at: dt.datetime | None = None
    credit_id: str | None = None
    credit_total: float | None = None
    credit_used: float | None = None
    credit_remaining: float | None = None
    credit_reserved: float | None = None
    credit_settled: float | None = None
    consumption_rate: float | None = None
    warning_tiers: list[WarningTier] = field(default_factory=list)

    def to_wire(self) -> JSON:
        out: JSON = {
            "feature_id": self.feature_id,
            "feature_key": self.feature_key,
            "value_type": self.value_type,
        }
        for name in _ENT_OPTIONAL:
            _put(out, name, getattr(self, name))
        if self.metric_reset_at is not None:
            out["metric_reset_at"] = format_ts(self.metric_reset_at)
        out["warning_tiers"] = [{"key": t.key, "value": t.value} for t in self.warning_tiers]
        return out

    @classmethod
    def from_wire(cls, data: JSON) -> FeatureEntitlement:
        ent = cls(data["feature_id"], data["feature_key"], data.get("value_type") or "unknown")
        for name in _ENT_OPTIONAL:
            setattr(ent, name, data.get(name))
        ent.metric_reset_at = _opt_ts(data.get("metric_reset_at"))
        ent.warning_tiers = [WarningTier(t["key"], int(t["value"])) for t in data.get("warning_tiers") or []]
        return ent


@dataclass(slots=True, frozen=True)
class CreditPostpaid:
    """Post-paid credit: consumption may overdraw the balance by ``overdraft_limit``
    (``None``: without limit)."""

    overdraft_limit: float | None = None

    def to_wire(self) -> JSON:
        out: JSON = {}
        _put(out, "overdraft_limit", self.overdraft_limit)
        return out


@dataclass(slots=True)
class Company:
    id: str
    account_id: str = ""
    environment_id: str = ""
    keys: dict[str, str] = field(default_factory=dict)
    base_plan_id: str | None = None
    plan_ids: list[str] = field(default_factory=list)
    plan_version_ids: list[str] = field(default_factory=list)
    billing_product_ids: list[str] = field(default_factory=list)
    credit_balances: dict[str, float] = field(default_factory=dict)
    entitlements: list[FeatureEntitlement] = field(default_factory=list)
    metrics: list[CompanyMetric] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)
    subscription: Subscription | None = None
    traits: list[Trait] = field(default_factory=list)
    credit_postpaid: dict[str, CreditPostpaid] = field(default_factory=dict)

    def to_wire(self) -> JSON:
        out: JSON = {
            "id": self.id,
            "account_id": self.account_id,
            "environment_id": self.environment_id,
            "keys": dict(self.keys),
            "plan_ids": list(self.plan_ids),
            "plan_version_ids": list(self.plan_version_ids),
            "billing_product_ids": list(self.billing_product_ids),
            "credit_balances": dict(self.credit_balances),
            "entitlements": [e.to_wire() for e in self.entitlements],
            "metrics": [m.to_wire() for m in self.metrics],
            "rules": [r.to_wire() for r in self.rules],
            "traits": [t.to_wire() for t in self.traits],
        }
        _put(out, "base_plan_id", self.base_plan_id)
        if self.subscription is not None:
            out["subscription"] = self.subscription.to_wire()
        if self.credit_postpaid:  # optional on the wire; omitted when unused
            out["credit_postpaid"] = {k: v.to_wire() for k, v in self.credit_postpaid.items()}
        return out

    @classmethod
    def from_wire(cls, data: JSON) -> Company:
        sub = data.get("subscription")
        return cls(
            id=data["id"],
            account_id=data.get("account_id", ""),
            environment_id=data.get("environment_id", ""),
            keys=dict(data.get("keys") or {}),
            base_plan_id=data.get("base_plan_id"),
            plan_ids=list(data.get("plan_ids") or []),
            plan_version_ids=list(data.get("plan_version_ids") or []),
            billing_product_ids=list(data.get("billing_product_ids") or []),
            credit_balances={k: float(v) for k, v in (data.get("credit_balances") or {}).items()},
            entitlements=[FeatureEntitlement.from_wire(e) for e in data.get("entitlements") or []],
            metrics=[CompanyMetric.from_wire(m) for m in data.get("metrics") or []],
            rules=[Rule.from_wire(r) for r in data.get("rules") or []],
            subscription=None if sub is None else Subscription.from_wire(sub),
            traits=[Trait.from_wire(t) for t in data.get("traits") or []],
            credit_postpaid={
                k: CreditPostpaid(v.get("overdraft_limit"))
                for k, v in (data.get("credit_postpaid") or {}).items()
            },
        )


@dataclass(slots=True)
class User:
    id: str
    account_id: str = ""
    environment_id: str = ""
    keys: dict[str, str] = field(default_factory=dict)
    traits: list[Trait] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)

    def to_wire(self) -> JSON:
        return {
            "id": self.id,
            "account_id": self.account_id,
            "environment_id": self.environment_id,
            "keys": dict(self.keys),
            "traits": [t.to_wire() for t in self.traits],
            "rules": [r.to_wire() for r in self.rules],
        }

    @classmethod
    def from_wire(cls, data: JSON) -> User:
        return cls(
            id=data["id"],
            account_id=data.get("account_id", ""),
            environment_id=data.get("environment_id", ""),
            keys=dict(data.get("keys") or {}),
            traits=[Trait.from_wire(t) for t in data.get("traits") or []],
            rules=[Rule.from_wire(r) for r in data.get("rules") or []],
        )


@dataclass(slots=True, frozen=True)
class EventUsage:
    event_subtype: str
    quantity: int = 1

    def to_wire(self) -> JSON:
        return {"event_subtype": self.event_subtype, "quantity": self.quantity}


@dataclass(slots=True, frozen=True)
class Preflight:
    """Hypothetical usage for a single check (the engine's ``options`` block)."""

    usage: int | None = None
    event_usage: EventUsage | None = None
    credit_cost: dict[str, float] | None = None

    def to_wire(self) -> JSON:
        out: JSON = {}
        _put(out, "usage", self.usage)
        if self.event_usage is not None:
            out["event_usage"] = self.event_usage.to_wire()
        if self.credit_cost is not None:
            out["credit_cost"] = dict(self.credit_cost)
        return out

    @classmethod
    def from_wire(cls, data: JSON) -> Preflight:
        eu = data.get("event_usage")
        return cls(
            usage=data.get("usage"),
            event_usage=None if eu is None else EventUsage(eu["event_subtype"], int(eu.get("quantity", 1))),
            credit_cost=None if data.get("credit_cost") is None else dict(data["credit_cost"]),
        )


@dataclass(slots=True, frozen=True)
class CheckFlagResult:
    """One evaluation's outcome. Frozen: snapshots hand the same instance to every caller."""

    flag_key: str
    value: bool
    reason: str
    flag_id: str | None = None
    rule_id: str | None = None
    rule_type: str | None = None
    company_id: str | None = None
    user_id: str | None = None
    entitlement: FeatureEntitlement | None = None
    err: str | None = None
    feature_allocation: int | None = None
    feature_usage: int | None = None
    feature_usage_event: str | None = None
    feature_usage_period: str | None = None
    feature_usage_reset_at: dt.datetime | None = None

    def to_wire(self) -> JSON:
        out: JSON = {"flag_key": self.flag_key, "value": self.value, "reason": self.reason}
        for name in (
            "flag_id",
            "rule_id",
            "rule_type",
            "company_id",
            "user_id",
            "err",
            "feature_allocation",
            "feature_usage",
            "feature_usage_event",
            "feature_usage_period",
        ):
            _put(out, name, getattr(self, name))
        if self.entitlement is not None:
            out["entitlement"] = self.entitlement.to_wire()
        if self.feature_usage_reset_at is not None:
            out["feature_usage_reset_at"] = format_ts(self.feature_usage_reset_at)
        return out

    @classmethod
    def from_wire(cls, data: JSON) -> CheckFlagResult:
        ent = data.get("entitlement")
        return cls(
            flag_key=data["flag_key"],
            value=bool(data["value"]),
            reason=data["reason"],
            flag_id=data.get("flag_id"),
            rule_id=data.get("rule_id"),
            rule_type=data.get("rule_type"),
            company_id=data.get("company_id"),
            user_id=data.get("user_id"),
            entitlement=None if ent is None else FeatureEntitlement.from_wire(ent),
            err=data.get("err"),
            feature_allocation=data.get("feature_allocation"),
            feature_usage=data.get("feature_usage"),
            feature_usage_event=data.get("feature_usage_event"),
            feature_usage_period=data.get("feature_usage_period"),
            feature_usage_reset_at=_opt_ts(data.get("feature_usage_reset_at")),
        )
