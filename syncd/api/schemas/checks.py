"""Request bodies of the runtime endpoints: flag checks and events."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .base import Body

KeyMap = dict[str, str]


class EventUsageBody(Body):
    event_subtype: str = Field(min_length=1, max_length=255)
    quantity: int = Field(default=1, ge=0)


class PreflightBody(Body):
    usage: int | None = Field(default=None, ge=0)
    event_usage: EventUsageBody | None = None
    credit_cost: dict[str, float] | None = Field(default=None, max_length=100)


class CheckFlagBody(Body):
    company: KeyMap | None = None
    user: KeyMap | None = None
    preflight: PreflightBody | None = None


class CheckFlagsBulkBody(Body):
    contexts: list[CheckFlagBody] = Field(min_length=1, max_length=100)


class CaptureEvent(BaseModel):
    """One event of the SDKs' capture batch (``POST /batch``); its body is validated by type."""

    model_config = ConfigDict(strict=True, extra="ignore")
    type: str = Field(min_length=1)
    body: dict[str, Any] = Field(default_factory=dict)
    api_key: str | None = None
    idempotency_key: str | None = Field(default=None, max_length=255)
    sent_at: str | None = None
    trusted_client_clock: bool | None = None
    backfill: bool | None = None


class CaptureBatchBody(Body):
    events: list[CaptureEvent]


class CreateEventBody(Body):
    """``POST /events`` (``CreateEventRequestBody``)."""

    event_type: Literal["identify", "track", "flag_check"]
    body: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: str | None = Field(default=None, max_length=255)
    sent_at: str | None = None
    trusted_client_clock: bool | None = None
    backfill: bool | None = None


class CreateEventBatchBody(Body):
    events: list[CreateEventBody] = Field(min_length=1, max_length=1000)
