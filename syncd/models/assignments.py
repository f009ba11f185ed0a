"""What each company has: plan assignments, plan-change history, scheduled downgrades, overrides."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from .base import UTCDateTime, created_field, fk, generated_id_field, id_field, json_field, ts_field


class CompanyPlan(SQLModel, table=True):
    """A current assignment of a plan (``role`` base or add_on) to a company.

    ``source`` says why it is there: billing | manual | audience | initial | fallback |
    trial_expiry. Exactly one base assignment per company is enforced by the service layer.
    """

    __tablename__ = "company_plan"
    __table_args__ = (
        UniqueConstraint("company_id", "plan_id"),  # also the index by company
        # The timers look for rows at or before a time, never for NULLs (most rows).
        Index(
            "ix_company_plan_trial_end",
            "trial_end",
            postgresql_where=text("trial_end IS NOT NULL"),
            sqlite_where=text("trial_end IS NOT NULL"),
        ),
        Index(
            "ix_company_plan_access_until",
            "access_until",
            postgresql_where=text("access_until IS NOT NULL"),
            sqlite_where=text("access_until IS NOT NULL"),
        ),
    )

    id: str = id_field("cpln")
    company_id: str = fk("company.id", index=False)
    plan_id: str = fk("plan.id")
    plan_version_id: str = fk("plan_version.id")
    role: str = Field(default="base", max_length=16)
    source: str = Field(default="manual", max_length=32)
    quantity: int = 1
    trial_end: datetime | None = ts_field()
    trial_status: str | None = Field(default=None, max_length=16)  # active | converted | expired
    access_until: datetime | None = ts_field()  # e.g. cancel_at_period_end
    stripe_subscription_id: str | None = Field(default=None, max_length=255, index=True)
    stripe_subscription_item_id: str | None = Field(default=None, max_length=255)
    stripe_price_id: str | None = Field(default=None, max_length=255)
    created_at: datetime = created_field()
    updated_at: datetime = created_field()


class PlanChange(SQLModel, table=True):
    """Plan-change history, in the shape of Schematic's ``PlanChangeResponseData``."""

    __tablename__ = "plan_change"

    id: str = id_field("plch")
    company_id: str = fk("company.id")
    action: str = Field(max_length=40)
    base_plan_action: str | None = Field(default=None, max_length=32)
    subscription_change_action: str | None = Field(default=None, max_length=32)
    actor_type: str = Field(default="system", max_length=32)
    actor: str | None = Field(default=None, max_length=255)
    previous_base_plan_id: str | None = Field(default=None, max_length=40)
    base_plan_id: str | None = Field(default=None, max_length=40)
    previous_base_plan_version_id: str | None = Field(default=None, max_length=40)
    base_plan_version_id: str | None = Field(default=None, max_length=40)
    add_ons_added: list[str] = json_field(list)
    add_ons_removed: list[str] = json_field(list)
    traits_updated: list[dict[str, Any]] = json_field(list)
    created_at: datetime = created_field()


class ScheduledDowngrade(SQLModel, table=True):
    """A downgrade deferred to the end of the billing period (status pending|applied|canceled)."""

    __tablename__ = "scheduled_downgrade"

    id: str = id_field("schd")
    company_id: str = fk("company.id")
    from_plan_id: str = fk("plan.id", index=False)
    to_plan_id: str = fk("plan.id", index=False)
    to_plan_version_id: str | None = Field(default=None, max_length=40)
    effective_after: datetime = Field(sa_type=UTCDateTime, index=True)
    stripe_schedule_id: str | None = Field(default=None, max_length=255)
    status: str = Field(default="pending", max_length=16, index=True)
    created_at: datetime = created_field()


class CompanyOverride(SQLModel, table=True):
    """A per-company entitlement for one feature, optionally expiring."""

    __tablename__ = "company_override"
    __table_args__ = (UniqueConstraint("company_id", "feature_id"),)

    id: str = id_field("cmov")
    company_id: str = fk("company.id")
    feature_id: str = fk("feature.id")
    value_type: str = Field(max_length=16)
    value_bool: bool | None = None
    value_numeric: int | None = None
    value_trait_id: str | None = fk("trait_definition.id", nullable=True, index=False)
    value_credit_id: str | None = fk("credit_type.id", nullable=True, index=False)
    credit_consumption_rate: float | None = None
    metric_period: str | None = Field(default=None, max_length=32)
    metric_period_month_reset: str | None = Field(default=None, max_length=32)
    expiration_date: datetime | None = ts_field(index=True)
    rule_id: str = generated_id_field("rule")
    rule_id_usage_exceeded: str | None = Field(default=None, max_length=40)
    created_at: datetime = created_field()
    updated_at: datetime = created_field()


class OverrideNote(SQLModel, table=True):
    __tablename__ = "override_note"

    id: str = id_field("cmon")
    override_id: str = fk("company_override.id")
    note: str = Field(max_length=4096)
    external_user_id: str | None = Field(default=None, max_length=255)
    external_user_name: str | None = Field(default=None, max_length=255)
    created_at: datetime = created_field()
    updated_at: datetime = created_field()
