"""Outbound webhook endpoints and deliveries as Schematic's response shapes."""

from __future__ import annotations

import json
from typing import Any

from ...models import WebhookDelivery, WebhookEndpoint

# Schematic knows pending | success | failure: a claimed row is still pending, a dead letter failed.
_STATUS = {
    "pending": "pending",
    "sending": "pending",
    "success": "success",
    "failure": "failure",
    "dead": "failure",
}


def webhook_view(endpoint: WebhookEndpoint) -> dict[str, Any]:
    """``WebhookResponseData`` (including the signing secret, as Schematic returns it)."""
    return {
        "id": endpoint.id,
        "name": endpoint.name,
        "url": endpoint.url,
        "request_types": list(endpoint.request_types),
        "entitlement_trigger_configs": list(endpoint.entitlement_trigger_configs),
        "credit_trigger_configs": list(endpoint.credit_trigger_configs),
        "secret": endpoint.secret,
        "status": endpoint.status,
        "signature_scheme": endpoint.signature_scheme,  # syncd's own (None: the configured default)
        "created_at": endpoint.created_at,
        "updated_at": endpoint.updated_at,
    }


def delivery_view(delivery: WebhookDelivery, endpoint: WebhookEndpoint | None = None) -> dict[str, Any]:
    """``WebhookEventDetailResponseData`` (``payload`` is the JSON body as a string)."""
    return {
        "id": delivery.id,
        "webhook_id": delivery.webhook_id,
        "webhook": webhook_view(endpoint) if endpoint else None,
        "request_type": delivery.request_type,
        "payload": json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True),
        "status": _STATUS.get(delivery.status, delivery.status),
        "attempt_count": delivery.attempts,
        "response_code": delivery.response_code,
        "sent_at": delivery.sent_at,
        "created_at": delivery.created_at,
        "updated_at": delivery.updated_at,
    }
