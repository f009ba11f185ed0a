"""Local mirror of Stripe objects.

Every row keeps the raw payload (``data``) so a remapping never needs a re-fetch, and a
version watermark (``source_created`` plus ``source_id``) so an older snapshot arriving
late never overwrites a newer one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger
from sqlmodel import Field, SQLModel

from .base import created_field, json_field


class StripeObjectBase(SQLModel):
    stripe_id: str = Field(primary_key=True, max_length=255)
    livemode: bool = False
    data: dict[str, Any] = json_field(dict)
    deleted: bool = False
    # Watermark: Stripe time of the snapshot we hold, and the event (or "fetch") it came from.
    source_created: int = Field(default=0, sa_type=BigInteger)
    source_id: str = Field(default="", max_length=255)
    synced_at: datetime = created_field()


class StripeProduct(StripeObjectBase, table=True):
    __tablename__ = "stripe_product"


class StripePrice(StripeObjectBase, table=True):
    __tablename__ = "stripe_price"

    product_id: str | None = Field(default=None, max_length=255, index=True)


class StripeCustomer(StripeObjectBase, table=True):
    __tablename__ = "stripe_customer"

    company_id: str | None = Field(default=None, max_length=40, index=True)


class StripeSubscription(StripeObjectBase, table=True):
    __tablename__ = "stripe_subscription"

    customer_id: str | None = Field(default=None, max_length=255, index=True)
    status: str | None = Field(default=None, max_length=32)
    # Billing-cycle anchors (from the items in current API versions, else the subscription):
    # what billing-cycle metric resets and the wire Subscription{period_start, period_end} read.
    current_period_start: int | None = Field(default=None, sa_type=BigInteger)
    current_period_end: int | None = Field(default=None, sa_type=BigInteger)
    # Stripe time at which we first saw it past_due (drives the past_due grace window).
    past_due_since: int | None = Field(default=None, sa_type=BigInteger)


class StripeSubscriptionSchedule(StripeObjectBase, table=True):
    __tablename__ = "stripe_subscription_schedule"

    customer_id: str | None = Field(default=None, max_length=255, index=True)
    subscription_id: str | None = Field(default=None, max_length=255, index=True)


class StripeInvoice(StripeObjectBase, table=True):
    __tablename__ = "stripe_invoice"

    customer_id: str | None = Field(default=None, max_length=255, index=True)
    subscription_id: str | None = Field(default=None, max_length=255, index=True)


class StripeMeter(StripeObjectBase, table=True):
    __tablename__ = "stripe_meter"

    event_name: str | None = Field(default=None, max_length=255, index=True)


class SyncCursor(SQLModel, table=True):
    """Named resumable positions: events API replay, full-sweep progress per object type."""

    __tablename__ = "sync_cursor"

    name: str = Field(primary_key=True, max_length=64)
    value: str = Field(default="", max_length=1024)
    updated_at: datetime = created_field()
