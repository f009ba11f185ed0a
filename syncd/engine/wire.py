"""The rules-engine wire model: slotted dataclasses with exact snake_case JSON.

The shapes mirror Schematic's rules-engine models (Flag, Rule, Company, ...), so the JSON that
``to_wire()`` produces is what the official WASM engine and a Schematic replicator's Redis hold.
Lists are always ``[]`` on the wire, never ``null``: the engine rejects ``null`` collections.
Optional scalars are omitted when unset rather than sent as ``null`` for the same reason.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]

# The rules-engine model "version key" that cache keys embed (``schematic:company:{v}:...``),
# i.e. what the official WASM build (schematichq 1.4.x) reports from get_version_key_wasm.
# Our wire shapes match that build; the tests pin the two together.
ENGINE_VERSION_KEY = "fde6dba2"

UTC = dt.UTC

RULE_TYPES = (
    "global_override",
    "company_override",
    "plan_entitlement",
    "company_override_usage_exceeded",
    "plan_entitlement_usage_exceeded",
    "standard",
    "default",
)
CONDITION_TYPES = (
    "base_plan",
    "billing_product",
    "company",
    "credit",
    "metric",
    "plan",
    "plan_version",
    "trait",
    "user",
)
OPERATORS = ("eq", "ne", "gt", "lt", "gte", "lte", "is_empty", "not_empty")
METRIC_PERIODS = ("all_time", "current_day", "current_week", "current_month")
MONTH_RESETS = ("first_of_month", "billing_cycle")
COMPARABLE_TYPES = ("bool", "date", "int", "string")
ENTITY_TYPES = ("company", "user")
VALUE_TYPES = ("boolean", "credit", "numeric", "trait", "unknown", "unlimited")


def format_ts(value: dt.datetime) -> str:
    """RFC 3339 in UTC with a ``Z`` suffix, fractional seconds only when present."""
    value = value.astimezone(UTC)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond:06d}".rstrip("0")
    return text + "Z"


def parse_ts(value: str | dt.datetime) -> dt.datetime:
    """Parse an RFC 3339 timestamp (or pass a datetime through), normalised to aware UTC."""
    if isinstance(value, dt.datetime):
        parsed = value
    else:
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        parsed = dt.datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _opt_ts(value: Any) -> dt.datetime | None:
    return None if value is None else parse_ts(value)


def _put(out: JSON, key: str, value: Any) -> None:
    """Set an optional scalar only when it carries a value (absent != null for the engine)."""
    if value is not None:
        out[key] = value


@dataclass(slots=True)
class TraitDefinition:
    id: str
    comparable_type: str = "string"
    entity_type: str = "company"

    def to_wire(self) -> JSON:
        return {
            "id": self.id,
            "comparable_type": self.comparable_type,
            "entity_type": self.entity_type,
        }

    @classmethod
    def from_wire(cls, data: JSON) -> TraitDefinition:
        return cls(data["id"], data.get("comparable_type", "string"), data.get("entity_type", "company"))


def _opt_td(data: Any) -> TraitDefinition | None:
    return None if data is None else TraitDefinition.from_wire(data)


@dataclass(slots=True)
class Trait:
    value: str
    trait_definition: TraitDefinition | None = None

    def to_wire(self) -> JSON:
        out: JSON = {"value": self.value}
        if self.trait_definition is not None:
            out["trait_definition"] = self.trait_definition.to_wire()
        return out

    @classmethod
    def from_wire(cls, data: JSON) -> Trait:
        return cls(data.get("value") or "", _opt_td(data.get("trait_definition")))


@dataclass(slots=True)
class Condition:
    """One condition of a rule. Give it a non-empty ``id``: the engine treats a condition with
    an empty id as absent and it never matches (likewise rules and flags without ids)."""

    condition_type: str
    operator: str = "eq"
    id: str = ""
    account_id: str = ""
    environment_id: str = ""
    resource_ids: list[str] = field(default_factory=list)
    event_subtype: str | None = None
    metric_value: int | None = None
    metric_period: str | None = None
    metric_period_month_reset: str | None = None
    credit_id: str | None = None
    consumption_rate: float | None = None
    trait_definition: TraitDefinition | None = None
    trait_value: str = ""
    comparison_trait_definition: TraitDefinition | None = None

    def to_wire(self) -> JSON:
        out: JSON = {
            "id": self.id,
            "account_id": self.account_id,
            "environment_id": self.environment_id,
            "condition_type": self.condition_type,
            "operator": self.operator,
            "resource_ids": list(self.resource_ids),
            "trait_value": self.trait_value,
        }
        _put(out, "event_subtype", self.event_subtype)
        _put(out, "metric_value", self.metric_value)
        _put(out, "metric_period", self.metric_period)
        _put(out, "metric_period_month_reset", self.metric_period_month_reset)
        _put(out, "credit_id", self.credit_id)
        _put(out, "consumption_rate", self.consumption_rate)
        if self.trait_definition is not None:
            out["trait_definition"] = self.trait_definition.to_wire()
        if self.comparison_trait_definition is not None:
            out["comparison_trait_definition"] = self.comparison_trait_definition.to_wire()
        return out

    @classmethod
    def from_wire(cls, data: JSON) -> Condition:
        return cls(
            condition_type=data["condition_type"],
            operator=data.get("operator", "eq"),
            id=data.get("id", ""),
            account_id=data.get("account_id", ""),
            environment_id=data.get("environment_id", ""),
            resource_ids=list(data.get("resource_ids") or []),
            event_subtype=data.get("event_subtype"),
            metric_value=data.get("metric_value"),
            metric_period=data.get("metric_period"),
            metric_period_month_reset=data.get("metric_period_month_reset"),
            credit_id=data.get("credit_id"),
            consumption_rate=data.get("consumption_rate"),
            trait_definition=_opt_td(data.get("trait_definition")),
            trait_value=data.get("trait_value") or "",
            comparison_trait_definition=_opt_td(data.get("comparison_trait_definition")),
        )


@dataclass(slots=True)
class ConditionGroup:
    conditions: list[Condition] = field(default_factory=list)

    def to_wire(self) -> JSON:
        return {"conditions": [c.to_wire() for c in self.conditions]}

    @classmethod
    def from_wire(cls, data: JSON) -> ConditionGroup:
        return cls([Condition.from_wire(c) for c in data.get("conditions") or []])


@dataclass(slots=True)
class Rule:
    id: str
    rule_type: str
    value: bool
    name: str = ""
    priority: int = 0
    conditions: list[Condition] = field(default_factory=list)
    condition_groups: list[ConditionGroup] = field(default_factory=list)
    flag_id: str | None = None
    account_id: str = ""
    environment_id: str = ""

    def to_wire(self) -> JSON:
        out: JSON = {
            "id": self.id,
            "account_id": self.account_id,
            "environment_id": self.environment_id,
            "rule_type": self.rule_type,
            "name": self.name,
            "priority": self.priority,
            "value": self.value,
            "conditions": [c.to_wire() for c in self.conditions],
            "condition_groups": [g.to_wire() for g in self.condition_groups],
        }
        _put(out, "flag_id", self.flag_id)
        return out

    @classmethod
    def from_wire(cls, data: JSON) -> Rule:
        return cls(
            id=data["id"],
            rule_type=data["rule_type"],
            value=bool(data.get("value", False)),
            name=data.get("name", ""),
            priority=int(data.get("priority", 0)),
            conditions=[Condition.from_wire(c) for c in data.get("conditions") or []],
            condition_groups=[ConditionGroup.from_wire(g) for g in data.get("condition_groups") or []],
            flag_id=data.get("flag_id"),
            account_id=data.get("account_id", ""),
            environment_id=data.get("environment_id", ""),
        )


@dataclass(slots=True)
class Flag:
    id: str
    key: str
    default_value: bool = False
    rules: list[Rule] = field(default_factory=list)
    account_id: str = ""
    environment_id: str = ""

    def to_wire(self) -> JSON:
        return {
            "id": self.id,
            "account_id": self.account_id,
            "environment_id": self.environment_id,
            "key": self.key,
            "default_value": self.default_value,
            "rules": [r.to_wire() for r in self.rules],
        }

    @classmethod
    def from_wire(cls, data: JSON) -> Flag:
        return cls(
            id=data["id"],
            key=data["key"],
            default_value=bool(data.get("default_value", False)),
            rules=[Rule.from_wire(r) for r in data.get("rules") or []],
            account_id=data.get("account_id", ""),
            environment_id=data.get("environment_id", ""),
        )


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
