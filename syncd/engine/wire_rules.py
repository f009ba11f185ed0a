"""Wire model, part 1: flags, rules, conditions and traits (re-exported by ``wire``).

The rules-engine wire model: slotted dataclasses with exact snake_case JSON.

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
