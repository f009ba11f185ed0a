"""Metering and credits: the event log, idempotency keys, per-period metrics, credit ledger."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from .base import UTCDateTime, bigint_pk, created_field, fk, id_field, json_field, ts_field


class UsageEvent(SQLModel, table=True):
    """Every accepted track event, kept so counts can be rebuilt and flushed to Stripe."""

    __tablename__ = "usage_event"
    __table_args__ = (
        Index("ix_usage_event_company_event_time", "company_id", "event_subtype", "occurred_at"),
    )

    id: int | None = bigint_pk()
    company_id: str = fk("company.id", index=False)
    user_id: str | None = Field(default=None, max_length=40)
    event_subtype: str = Field(max_length=255)
    quantity: int = Field(default=1, sa_type=BigInteger)
    occurred_at: datetime = Field(sa_type=UTCDateTime)
    received_at: datetime = created_field()
    idempotency_key: str | None = Field(default=None, max_length=255)
    backfill: bool = False
    flushed_to_stripe_at: datetime | None = ts_field(index=True)
    stripe_batch_id: str | None = Field(default=None, max_length=100, index=True)


class EventIdempotency(SQLModel, table=True):
    """Dedupe window for event idempotency keys (24 h, scoped by event type)."""

    __tablename__ = "event_idempotency"

    key: str = Field(primary_key=True, max_length=300)  # "<event_type>:<idempotency key>"
    expires_at: datetime = Field(sa_type=UTCDateTime, index=True)


class CompanyMetric(SQLModel, table=True):
    """Usage pre-aggregated per (event, period, month reset, period start)."""

    __tablename__ = "company_metric"
    __table_args__ = (
        UniqueConstraint("company_id", "event_subtype", "period", "month_reset", "period_start"),
    )

    id: int | None = bigint_pk()
    company_id: str = fk("company.id", index=False)
    event_subtype: str = Field(max_length=255)
    period: str = Field(max_length=16)  # all_time | current_day | current_week | current_month
    month_reset: str = Field(default="first_of_month", max_length=16)
    period_start: datetime = Field(sa_type=UTCDateTime)
    valid_until: datetime | None = ts_field()
    value: int = Field(default=0, sa_type=BigInteger)
    updated_at: datetime = created_field()


class CreditType(SQLModel, table=True):
    __tablename__ = "credit_type"

    id: str = id_field("bcrd")
    key: str = Field(max_length=255, unique=True)
    name: str = Field(max_length=255)
    singular_name: str | None = Field(default=None, max_length=255)
    plural_name: str | None = Field(default=None, max_length=255)
    burn_strategy: str = Field(default="plan_first_then_credit_bundles_first_in_first_out", max_length=64)
    price_amount: int | None = None
    currency: str = Field(default="usd", max_length=3)
    created_at: datetime = created_field()


class PlanCreditGrant(SQLModel, table=True):
    """Credits a plan version grants each reset."""

    __tablename__ = "plan_credit_grant"

    id: str = id_field("bpcg")
    plan_version_id: str = fk("plan_version.id")
    credit_type_id: str = fk("credit_type.id")
    credit_amount: float = 0
    reset_type: str = Field(default="plan_period", max_length=16)  # plan_period | no_reset
    reset_cadence: str | None = Field(default="monthly", max_length=16)
    reset_start: str = Field(default="billing_period", max_length=16)
    rollover_percentage: float = 0
    expiry_type: str | None = Field(default=None, max_length=32)
    expiry_unit: str | None = Field(default=None, max_length=16)
    expiry_unit_count: int | None = None


class CreditGrant(SQLModel, table=True):
    """Credits granted to a company (reason plan|purchased|adjustment|rollover|free|auto_topup)."""

    __tablename__ = "credit_grant"

    id: str = id_field("bcgr")
    company_id: str = fk("company.id")
    credit_type_id: str = fk("credit_type.id")
    reason: str = Field(max_length=32)
    amount: float
    remaining: float
    source_grant_id: str | None = Field(default=None, max_length=40)
    plan_credit_grant_id: str | None = Field(default=None, max_length=40)
    granted_at: datetime = created_field()
    expires_at: datetime | None = ts_field(index=True)
    zeroed_at: datetime | None = ts_field()
    zeroed_reason: str | None = Field(default=None, max_length=32)


class CreditLedgerEntry(SQLModel, table=True):
    """Append-only credit movements; balances are derivable from it."""

    __tablename__ = "credit_ledger"

    id: int | None = bigint_pk()
    company_id: str = fk("company.id")
    credit_type_id: str = fk("credit_type.id", index=False)
    grant_id: str | None = Field(default=None, max_length=40)
    amount: float  # positive grants, negative draws
    reason: str = Field(max_length=32)
    usage_event_id: int | None = Field(default=None, sa_type=BigInteger)
    details: dict[str, Any] = json_field(dict)
    created_at: datetime = created_field()
