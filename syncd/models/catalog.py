"""The catalog: features, flags with rules, plans and add-ons with versions, prices and entitlements.

Only hand-written flag rules (global override, standard, default) are stored as rules.
Plan entitlement and company override rules are compiled from their rows, so they can
never disagree with them; the rows keep the compiled rule ids stable.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, UniqueConstraint
from sqlmodel import Field, SQLModel

from .base import created_field, fk, generated_id_field, id_field, json_field, ts_field


class Feature(SQLModel, table=True):
    """A gated capability. ``feature_type``: boolean | event | trait (| license)."""

    __tablename__ = "feature"

    id: str = id_field("feat")
    key: str = Field(max_length=255, unique=True)
    name: str = Field(max_length=255)
    description: str = Field(default="", max_length=2048)
    feature_type: str = Field(default="boolean", max_length=16)
    event_subtype: str | None = Field(default=None, max_length=255, index=True)
    trait_id: str | None = fk("trait_definition.id", nullable=True, ondelete="SET NULL")
    lifecycle_phase: str | None = Field(default=None, max_length=32)
    created_at: datetime = created_field()
    updated_at: datetime = created_field()


class Flag(SQLModel, table=True):
    """The boolean gate checked in code; shares its key with its feature."""

    __tablename__ = "flag"

    id: str = id_field("flag")
    key: str = Field(max_length=255, unique=True)
    name: str = Field(max_length=255)
    description: str = Field(default="", max_length=2048)
    flag_type: str = Field(default="boolean", max_length=16)
    default_value: bool = False
    feature_id: str | None = fk("feature.id", nullable=True)
    created_at: datetime = created_field()
    updated_at: datetime = created_field()


class Rule(SQLModel, table=True):
    """A hand-written flag rule (rule_type global_override | standard | default)."""

    __tablename__ = "rule"

    id: str = id_field("rule")
    flag_id: str = fk("flag.id")
    rule_type: str = Field(default="standard", max_length=40)
    name: str = Field(default="", max_length=255)
    priority: int = 0
    value: bool = True
    created_at: datetime = created_field()


class ConditionGroup(SQLModel, table=True):
    """Conditions OR-ed together; groups are AND-ed with each other and the rule's conditions."""

    __tablename__ = "condition_group"

    id: str = id_field("cgrp")
    rule_id: str = fk("rule.id")
    position: int = 0


class Condition(SQLModel, table=True):
    __tablename__ = "condition"

    id: str = id_field("cond")
    rule_id: str = fk("rule.id")
    group_id: str | None = fk("condition_group.id", nullable=True)
    position: int = 0
    condition_type: str = Field(max_length=32)
    operator: str = Field(default="eq", max_length=16)
    resource_ids: list[str] = json_field(list)
    event_subtype: str | None = Field(default=None, max_length=255)
    metric_value: int | None = None
    metric_period: str | None = Field(default=None, max_length=32)
    metric_period_month_reset: str | None = Field(default=None, max_length=32)
    credit_id: str | None = Field(default=None, max_length=40)
    consumption_rate: float | None = None
    trait_definition_id: str | None = fk("trait_definition.id", nullable=True, index=False)
    trait_value: str = Field(default="", max_length=1024)
    comparison_trait_definition_id: str | None = fk("trait_definition.id", nullable=True, index=False)


class Plan(SQLModel, table=True):
    """A base plan or an add-on (``plan_type``). ``key`` makes catalog-as-code idempotent."""

    __tablename__ = "plan"

    id: str = id_field("plan")
    key: str = Field(max_length=255, unique=True)
    name: str = Field(max_length=255)
    description: str = Field(default="", max_length=2048)
    plan_type: str = Field(default="plan", max_length=16)  # plan | add_on
    icon: str | None = Field(default=None, max_length=64)
    trial_days: int | None = None
    stripe_product_id: str | None = Field(default=None, max_length=255, index=True)
    is_custom: bool = False
    audience: list[dict[str, Any]] = json_field(list)  # plan-audience conditions (wire shape)
    audience_priority: int = 0
    created_at: datetime = created_field()
    updated_at: datetime = created_field()


class PlanVersion(SQLModel, table=True):
    """Statuses: draft | published | archived. Only the published version is assignable."""

    __tablename__ = "plan_version"
    __table_args__ = (UniqueConstraint("plan_id", "version"),)

    id: str = id_field("plvr")
    plan_id: str = fk("plan.id")
    version: int = 1
    status: str = Field(default="draft", max_length=16)
    created_at: datetime = created_field()
    published_at: datetime | None = ts_field()
    archived_at: datetime | None = ts_field()


class PlanPrice(SQLModel, table=True):
    """A price of one plan version. ``interval``: month | year | one_time."""

    __tablename__ = "plan_price"
    __table_args__ = (UniqueConstraint("plan_version_id", "interval", "currency"),)

    id: str = id_field("plpr")
    plan_version_id: str = fk("plan_version.id")
    interval: str = Field(max_length=16)
    amount: int = 0  # minor units
    currency: str = Field(default="usd", max_length=3)
    price_behavior: str = Field(default="flat", max_length=32)  # flat | pay_in_advance | ...
    stripe_price_id: str | None = Field(default=None, max_length=255, index=True)
    active: bool = True


class PlanEntitlement(SQLModel, table=True):
    """What a plan version grants for one feature.

    ``value_type``: boolean | numeric | unlimited | trait | credit.
    """

    __tablename__ = "plan_entitlement"
    __table_args__ = (UniqueConstraint("plan_version_id", "feature_id"),)

    id: str = id_field("pltn")
    plan_id: str = fk("plan.id")
    plan_version_id: str = fk("plan_version.id")
    feature_id: str = fk("feature.id")
    value_type: str = Field(max_length=16)
    value_bool: bool | None = None
    value_numeric: int | None = None
    value_trait_id: str | None = fk("trait_definition.id", nullable=True, index=False)
    value_credit_id: str | None = fk("credit_type.id", nullable=True, index=False)
    credit_consumption_rate: float | None = None
    metric_period: str | None = Field(default=None, max_length=32)
    metric_period_month_reset: str | None = Field(default=None, max_length=32)
    soft_limit: int | None = None
    price_behavior: str | None = Field(default=None, max_length=32)
    rule_id: str = generated_id_field("rule")
    rule_id_usage_exceeded: str | None = Field(default=None, max_length=40)
    created_at: datetime = created_field()
    updated_at: datetime = created_field()


class CatalogSettingsRow(SQLModel, table=True):
    """Catalog-wide plan configuration (one row, id=1)."""

    __tablename__ = "catalog_settings"

    id: int = Field(default=1, primary_key=True)
    initial_plan_id: str | None = fk("plan.id", nullable=True, index=False, ondelete="SET NULL")
    fallback_plan_id: str | None = fk("plan.id", nullable=True, index=False, ondelete="SET NULL")
    trial_expiry_plan_id: str | None = fk("plan.id", nullable=True, index=False, ondelete="SET NULL")
    trial_payment_method_required: bool = False
    prevent_downgrades_when_over_limit: bool = True
    prevent_self_service_downgrade: bool = False
    self_service_downgrade_url: str | None = Field(default=None, max_length=2048)
    scheduled_downgrade_behavior: str = Field(default="none", max_length=32)
    proration_behavior: str = Field(default="create_prorations", max_length=32)
    updated_at: datetime = created_field()


class CatalogStamp(SQLModel, table=True):
    """A counter that changes with every write to the catalog tables the Stripe applier maps
    with (one row, id=1; bumped by Postgres triggers, see migration 0009): the applier keeps
    its catalog lookups while the counter reads the same."""

    __tablename__ = "catalog_stamp"

    id: int = Field(default=1, primary_key=True)
    version: int = Field(default=0, sa_type=BigInteger)
