"""Operational tables: Stripe webhook inbox, adapter outbox, audit log, API keys,
outbound webhook endpoints and their delivery log, and scheduler leases."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from .base import UTCDateTime, bigint_pk, created_field, id_field, json_field, ts_field


class InboxEvent(SQLModel, table=True):
    """A Stripe event exactly as received, keyed by event id (duplicates are no-ops).

    ``status``: pending | applied | ignored | failed. ``source``: webhook | events_api.
    """

    __tablename__ = "inbox_event"
    __table_args__ = (Index("ix_inbox_event_status_created", "status", "stripe_created"),)

    event_id: str = Field(primary_key=True, max_length=255)
    event_type: str = Field(max_length=128)
    api_version: str | None = Field(default=None, max_length=64)
    livemode: bool = False
    object_id: str | None = Field(default=None, max_length=255, index=True)
    stripe_created: int = Field(default=0, sa_type=BigInteger)
    payload: str = Field(sa_type=Text)  # raw bytes as received (decoded UTF-8)
    source: str = Field(default="webhook", max_length=16)
    status: str = Field(default="pending", max_length=16)
    attempts: int = 0
    last_error: str | None = Field(default=None, sa_type=Text)
    received_at: datetime = created_field()
    applied_at: datetime | None = ts_field()


class ChangeLog(SQLModel, table=True):
    """The ordered feed of everything that changed: what engines and adapters follow.

    Rows are written inside the transaction that made the change, and ids are assigned in
    commit order (see ``syncd.services.changes``), so a follower that reads ``id > cursor``
    never skips a row that commits late. ``topic`` is ``entitlements.changed`` (company_id
    NULL meaning every company) or a domain event such as ``company.plan_changed``.
    """

    __tablename__ = "change_log"

    id: int | None = bigint_pk()
    topic: str = Field(max_length=128)
    company_id: str | None = Field(default=None, max_length=40)
    payload: dict[str, Any] = json_field(dict)
    created_at: datetime = created_field()


class OutboxMessage(SQLModel, table=True):
    """A side effect for one adapter, delivered at least once, in order per (adapter, ordering_key)."""

    __tablename__ = "outbox_message"
    __table_args__ = (
        Index("ix_outbox_pending", "adapter", "status", "next_attempt_at"),
        UniqueConstraint("adapter", "dedupe_key"),
    )

    id: int | None = bigint_pk()
    adapter: str = Field(max_length=64)
    ordering_key: str = Field(default="", max_length=255)
    dedupe_key: str = Field(max_length=255)  # stable id consumers can dedupe on
    topic: str = Field(max_length=128)
    payload: dict[str, Any] = json_field(dict)
    status: str = Field(default="pending", max_length=16)  # pending | delivered | dead
    attempts: int = 0
    next_attempt_at: datetime = created_field()
    last_error: str | None = Field(default=None, sa_type=Text)
    created_at: datetime = created_field()
    delivered_at: datetime | None = ts_field()


class AuditLog(SQLModel, table=True):
    __tablename__ = "audit_log"

    id: int | None = bigint_pk()
    actor_type: str = Field(default="system", max_length=32)  # api_key | cli | system | stripe
    actor: str | None = Field(default=None, max_length=255)
    action: str = Field(max_length=128)
    entity_type: str = Field(max_length=64)
    entity_id: str | None = Field(default=None, max_length=255, index=True)
    before: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    after: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    note: str | None = Field(default=None, sa_type=Text)
    created_at: datetime = created_field()


class ApiKey(SQLModel, table=True):
    """An API key, stored as a SHA-256 digest (keys are 190-bit random, so no KDF is needed).

    ``kind``: secret | publishable | readonly.
    """

    __tablename__ = "api_key"

    id: str = id_field("api")
    name: str = Field(default="", max_length=255)
    kind: str = Field(max_length=16)
    key_hash: str = Field(max_length=64, unique=True)
    hint: str = Field(max_length=32)  # prefix and last four characters, for listings
    created_at: datetime = created_field()
    last_used_at: datetime | None = ts_field()
    revoked_at: datetime | None = ts_field()


class WebhookEndpoint(SQLModel, table=True):
    """An outbound webhook subscriber registered through the API."""

    __tablename__ = "webhook_endpoint"

    id: str = id_field("whk")
    name: str = Field(max_length=255)
    url: str = Field(max_length=2048)
    request_types: list[str] = json_field(list)
    entitlement_trigger_configs: list[dict[str, Any]] = json_field(list)
    credit_trigger_configs: list[dict[str, Any]] = json_field(list)
    secret: str = Field(max_length=128)  # needed in clear to sign deliveries
    status: str = Field(default="active", max_length=16)  # active | inactive
    created_at: datetime = created_field()
    updated_at: datetime = created_field()
    # standard (Standard Webhooks) | schematic | both; None: the adapter's configured default.
    signature_scheme: str | None = Field(default=None, max_length=16)
    # Failure tracking for automatic disabling; reset by the next success or re-activation.
    failing_since: datetime | None = ts_field()
    consecutive_dead: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    disabled_reason: str | None = Field(default=None, max_length=255)


class WebhookDelivery(SQLModel, table=True):
    """The delivery log of outbound webhooks (``list_webhook_events``)."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        Index("ix_webhook_delivery_due", "status", "next_attempt_at"),
        Index("ix_webhook_delivery_order", "webhook_id", "company_id", "status"),
    )

    # Derived from (endpoint, change seq, event) for change-log deliveries, so a batch
    # published twice inserts nothing twice; also the ``webhook-id`` receivers dedupe on.
    id: str = id_field("whe")
    webhook_id: str = Field(foreign_key="webhook_endpoint.id", index=True, ondelete="CASCADE", max_length=40)
    request_type: str = Field(max_length=128)
    payload: dict[str, Any] = json_field(dict)
    # pending | sending (claimed; next_attempt_at is the claim's expiry) | success | dead
    # (attempts exhausted: a dead letter) | failure (a test send that failed; never retried).
    status: str = Field(default="pending", max_length=16)
    attempts: int = 0
    response_code: int | None = None
    next_attempt_at: datetime = created_field()
    sent_at: datetime | None = ts_field()
    created_at: datetime = created_field()
    updated_at: datetime = created_field()
    # Deliveries of one company to one endpoint go out in (change_seq, ordinal) order.
    company_id: str | None = Field(default=None, max_length=40)
    change_seq: int | None = Field(default=None, sa_type=BigInteger)
    ordinal: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    last_error: str | None = Field(default=None, sa_type=Text)


class WebhookLimitState(SQLModel, table=True):
    """The last usage threshold notified per company, feature and limit kind, so each
    ``entitlement.*limit.warning``/``reached`` fires once per metric period and allocation."""

    __tablename__ = "webhook_limit_state"

    company_id: str = Field(primary_key=True, foreign_key="company.id", ondelete="CASCADE", max_length=40)
    feature_id: str = Field(primary_key=True, max_length=40)
    kind: str = Field(primary_key=True, max_length=16)  # limit | soft_limit
    period: str = Field(default="", max_length=64)  # the period's reset time ("" if it never resets)
    allocation: int = Field(default=0, sa_type=BigInteger)
    level: int = 0  # highest threshold notified: 0, 80 or 100 (percent)
    updated_at: datetime = created_field()


class Lease(SQLModel, table=True):
    """A named lease held by one replica (leadership, single-instance guard)."""

    __tablename__ = "lease"

    name: str = Field(primary_key=True, max_length=64)
    holder: str = Field(max_length=255)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    acquired_at: datetime = created_field()
