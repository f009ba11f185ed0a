"""Plain input records for services whose arguments are nested (features, flag rules, entitlements).

Field names follow Schematic's request bodies so the API can build them field for field.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class FlagInput:
    """The flag created with (or updated through) a feature; ``key`` is shared with the feature."""

    key: str
    name: str
    description: str = ""
    default_value: bool | None = None


@dataclass(frozen=True, slots=True)
class ConditionInput:
    condition_type: str
    operator: str = "eq"
    resource_ids: Sequence[str] = ()
    trait_id: str | None = None
    trait_value: str | None = None
    comparison_trait_id: str | None = None
    event_subtype: str | None = None
    metric_value: int | None = None
    metric_period: str | None = None
    metric_period_month_reset: str | None = None
    credit_id: str | None = None
    credit_cost: float | None = None
    id: str | None = None


@dataclass(frozen=True, slots=True)
class ConditionGroupInput:
    conditions: Sequence[ConditionInput]
    id: str | None = None


@dataclass(frozen=True, slots=True)
class RuleInput:
    name: str
    priority: int = 0
    value: bool = True
    rule_type: str | None = None  # None: standard
    conditions: Sequence[ConditionInput] = ()
    condition_groups: Sequence[ConditionGroupInput] = ()
    id: str | None = None


@dataclass(frozen=True, slots=True)
class EntitlementValue:
    """What a plan entitlement or company override grants (``value_type`` decides which fields apply)."""

    value_type: str
    value_bool: bool | None = None
    value_numeric: int | None = None
    value_trait_id: str | None = None
    value_credit_id: str | None = None
    credit_consumption_rate: float | None = None
    metric_period: str | None = None
    metric_period_month_reset: str | None = None
    soft_limit: int | None = None


@dataclass(frozen=True, slots=True)
class BillingLink:
    """``upsert_billing_product_plan``: a Stripe product and its prices (amounts in minor units)."""

    billing_product_id: str | None
    charge_type: str = "recurring"
    is_trialable: bool = False
    trial_days: int | None = None
    currency: str = "usd"
    monthly_price: int | None = None
    monthly_price_id: str | None = None
    yearly_price: int | None = None
    yearly_price_id: str | None = None
    one_time_price: int | None = None
    one_time_price_id: str | None = None


@dataclass(frozen=True, slots=True)
class OverrideInput:
    value: EntitlementValue
    expiration_date: datetime | None = None
    note: str | None = None
    note_user_id: str | None = None
    note_user_name: str | None = None
