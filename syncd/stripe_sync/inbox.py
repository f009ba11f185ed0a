"""The durable inbox of Stripe events.

An event is stored exactly as received, keyed by its id, before anything is applied:
a duplicate delivery (or the same event seen again through the Events API) is a no-op,
and a crash after the 2xx loses nothing because applying happens off the request path.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from ..models import InboxEvent, utcnow

# Event types that can change what a company is entitled to, or the catalog mirror.
RELEVANT_PREFIXES = (
    "customer.",
    "product.",
    "price.",
    "plan.",
    "invoice.",
    "subscription_schedule.",
    "billing.meter.",
    "entitlements.",
    "test_helpers.test_clock.",
)


@dataclass(frozen=True, slots=True)
class StoredEvent:
    event_id: str
    event_type: str
    inserted: bool  # False: we had it already (duplicate delivery)
    status: str


class MalformedEvent(ValueError):
    """The payload is not a Stripe event object."""


def parse_event(raw: bytes) -> dict[str, Any]:
    try:
        event = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedEvent(f"body is not JSON: {exc}") from exc
    if not isinstance(event, dict) or event.get("object") != "event":
        raise MalformedEvent("body is not a Stripe event object")
    if not isinstance(event.get("id"), str) or not isinstance(event.get("type"), str):
        raise MalformedEvent("event has no id or type")
    created = event.get("created")
    # Stored as an integer column: anything else would fail later, as a server error.
    if created is not None and (type(created) is not int or not 0 <= created < 2**63):
        raise MalformedEvent("event.created is not a Unix timestamp")
    return event


def is_relevant(event_type: str) -> bool:
    return event_type.startswith(RELEVANT_PREFIXES)


def store_event(
    conn: Connection, raw: bytes, event: dict[str, Any], *, source: str = "webhook"
) -> StoredEvent:
    """Insert the event unless its id is already stored. Runs inside the caller's transaction."""
    data = event.get("data") if isinstance(event.get("data"), dict) else {}
    obj = data.get("object") if isinstance(data, dict) else None
    status = "pending" if is_relevant(event["type"]) else "ignored"
    values = {
        "event_id": event["id"],
        "event_type": event["type"],
        "api_version": event.get("api_version"),
        "livemode": bool(event.get("livemode")),
        "object_id": obj.get("id") if isinstance(obj, dict) else None,
        "stripe_created": int(event.get("created") or 0),
        "payload": raw.decode("utf-8"),
        "source": source,
        "status": status,
        "attempts": 0,
        "received_at": utcnow(),
    }
    table = InboxEvent.__table__  # type: ignore[attr-defined]
    dialect = conn.dialect.name
    insert = pg_insert(table) if dialect == "postgresql" else sqlite_insert(table)
    statement = insert.values(**values).on_conflict_do_nothing(index_elements=["event_id"])
    # RETURNING tells us reliably, on both backends, whether this delivery was the first.
    inserted = conn.execute(statement.returning(table.c.event_id)).first() is not None
    return StoredEvent(event["id"], event["type"], inserted, status if inserted else "duplicate")
