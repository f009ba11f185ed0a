"""Outbound webhook endpoints and their delivery log."""

from __future__ import annotations

from .base import Body, ListQuery


class FeatureTrigger(Body):
    feature_id: str


class CreditTrigger(Body):
    credit_id: str


class CreateWebhookBody(Body):
    name: str
    url: str
    request_types: list[str]
    entitlement_trigger_configs: list[FeatureTrigger] | None = None
    credit_trigger_configs: list[CreditTrigger] | None = None
    signature_scheme: str | None = None  # syncd's own: standard | schematic | both


class UpdateWebhookBody(Body):
    name: str | None = None
    url: str | None = None
    request_types: list[str] | None = None
    entitlement_trigger_configs: list[FeatureTrigger] | None = None
    credit_trigger_configs: list[CreditTrigger] | None = None
    status: str | None = None
    signature_scheme: str | None = None


class SendTestWebhookBody(Body):
    request_type: str


class ListWebhooksQuery(ListQuery):
    q: str | None = None


class ListWebhookEventsQuery(ListQuery):
    ids: list[str] | None = None
    q: str | None = None
    webhook_id: str | None = None
