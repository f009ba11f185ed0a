"""Metered features -> Stripe billing meters (one per tracked event name, created if missing)."""

from __future__ import annotations

import stripe
import structlog
from sqlmodel import Session, col, select

from ..models import Feature
from ..stripe_api import idempotency_key

log = structlog.get_logger(__name__)

CUSTOMER_PAYLOAD_KEY = "stripe_customer_id"
VALUE_PAYLOAD_KEY = "value"


def metered_events(session: Session) -> dict[str, str]:
    """Tracked event name -> feature name, for every event-type feature."""
    rows = session.exec(
        select(Feature).where(col(Feature.feature_type) == "event", col(Feature.event_subtype).is_not(None))
    ).all()
    return {str(f.event_subtype): f.name for f in rows}


def ensure_meters(client: stripe.StripeClient, events: dict[str, str], *, dry_run: bool = False) -> list[str]:
    """Create a sum meter for each event name Stripe has no active meter for; returns the
    event names created (or that would be). Meters are found by ``event_name``, so an existing
    meter (ours or hand-made) is used as is."""
    active = {
        m.event_name
        for m in client.v1.billing.meters.list({"limit": 100}).auto_paging_iter()
        if m.status == "active"
    }
    missing = sorted(set(events) - active)
    for event_name in missing if not dry_run else []:
        client.v1.billing.meters.create(
            {
                "display_name": events[event_name][:250] or event_name,
                "event_name": event_name,
                "default_aggregation": {"formula": "sum"},
                "customer_mapping": {"event_payload_key": CUSTOMER_PAYLOAD_KEY, "type": "by_id"},
                "value_settings": {"event_payload_key": VALUE_PAYLOAD_KEY},
            },
            {"idempotency_key": idempotency_key("meter", event_name)},
        )
        log.info("stripe_meter_created", event_name=event_name)
    return missing
