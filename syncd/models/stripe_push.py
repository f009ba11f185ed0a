"""syncd -> Stripe bookkeeping: the usage outbox's meter event batches."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger
from sqlmodel import Field, SQLModel

from .base import UTCDateTime, created_field, fk, ts_field


class StripeMeterBatch(SQLModel, table=True):
    """One meter event to send: the net usage of one company, event and hour window.

    Staged (with its usage events linked through ``usage_event.stripe_batch_id``) before it is
    sent, so a crash or an outage never re-groups usage differently: the retry sends the same
    ``identifier`` (Stripe dedupes it for at least 24 h) under the same idempotency key.
    ``status``: pending | sent | skipped (too old / zero; see ``note``). A correction (negative
    track) lands in a later batch, negative when it outweighs its hour's new usage; a sent batch
    never changes.
    """

    __tablename__ = "stripe_meter_batch"

    identifier: str = Field(primary_key=True, max_length=100)
    company_id: str = fk("company.id")
    event_name: str = Field(max_length=255)
    customer_id: str = Field(max_length=255)
    window_start: datetime = Field(sa_type=UTCDateTime)
    timestamp: int = Field(sa_type=BigInteger)
    value: int = Field(default=0, sa_type=BigInteger)
    events: int = 0
    status: str = Field(default="pending", max_length=16, index=True)
    note: str | None = Field(default=None, max_length=255)
    attempts: int = 0
    created_at: datetime = created_field()
    sent_at: datetime | None = ts_field()
