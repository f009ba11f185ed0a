"""The local mirror of Stripe objects, guarded by a per-object version watermark.

The watermark is ``(source_created, source_id)``: the Stripe time of the snapshot held and
the event (or fetch) it came from. A snapshot older than the watermark never overwrites the
row (out-of-order delivery); one from the same second but another event is a tie, which the
caller resolves by re-fetching the object (Stripe's ``created`` has one-second resolution, and
the strict ``<`` guard of other sync engines drops the newer of two same-second events).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal
from urllib.parse import quote

import stripe
import structlog
from sqlmodel import Session, SQLModel

from ..models import (
    StripeCustomer,
    StripeInvoice,
    StripeMeter,
    StripePrice,
    StripeProduct,
    StripeSubscription,
    StripeSubscriptionSchedule,
    utcnow,
)
from .normalize import (
    JSON,
    SubscriptionView,
    embedded_items,
    invoice_subscription_id,
    price_fields,
    ref_id,
    subscription_view,
)

log = structlog.get_logger(__name__)

MODELS: dict[str, type[SQLModel]] = {
    "product": StripeProduct,
    "price": StripePrice,
    "customer": StripeCustomer,
    "subscription": StripeSubscription,
    "subscription_schedule": StripeSubscriptionSchedule,
    "invoice": StripeInvoice,
    "billing.meter": StripeMeter,
}
Verdict = Literal["newer", "tie", "stale", "same"]


def compare(row: Any, created: int, source_id: str) -> Verdict:
    """Where a snapshot stands against the row's watermark."""
    if row is None:
        return "newer"
    if row.source_id == source_id:
        return "same"
    if created > row.source_created:
        return "newer"
    if created < row.source_created:
        return "stale"
    return "tie"


def get_row(session: Session, kind: str, stripe_id: str, *, lock: bool = False) -> Any:
    model = MODELS[kind]
    return session.get(model, stripe_id, with_for_update=lock and _locks(session))


def _locks(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def columns(kind: str, obj: JSON) -> dict[str, Any]:
    """The indexed columns a kind keeps next to the raw ``data``."""
    if kind == "price":
        product, _ = price_fields(obj)
        return {"product_id": product}
    if kind == "subscription":
        return subscription_columns(subscription_view(obj))
    if kind == "subscription_schedule":
        return {
            "customer_id": ref_id(obj.get("customer")),
            "subscription_id": ref_id(obj.get("subscription")),
        }
    if kind == "invoice":
        return {"customer_id": ref_id(obj.get("customer")), "subscription_id": invoice_subscription_id(obj)}
    if kind == "billing.meter":
        return {"event_name": obj.get("event_name")}
    return {}


def subscription_columns(view: SubscriptionView) -> dict[str, Any]:
    return {
        "customer_id": view.customer_id,
        "status": view.status,
        "current_period_start": view.period_start,
        "current_period_end": view.period_end,
    }


def past_due_since(
    status: str | None, previous_status: str | None, since: int | None, created: int
) -> int | None:
    """When a subscription went past_due (the grace window's start): kept while it stays
    past_due, set by the snapshot that made it so, cleared once it recovers."""
    if status != "past_due":
        return None
    if previous_status != "past_due" or since is None:
        return created
    return since


def store(
    session: Session,
    kind: str,
    obj: JSON,
    *,
    created: int,
    source_id: str,
    row: Any = None,
    deleted: bool = False,
) -> Any:
    """Write the snapshot into the mirror (the caller has checked the watermark)."""
    model = MODELS[kind]
    stripe_id = str(obj["id"])
    if row is None:
        row = session.get(model, stripe_id)
    if row is None:
        row = model(stripe_id=stripe_id)
    previous_status = getattr(row, "status", None)
    row.data = obj
    row.livemode = bool(obj.get("livemode"))
    row.deleted = deleted or bool(obj.get("deleted"))
    row.source_created = max(created, row.source_created or 0)
    row.source_id = source_id
    row.synced_at = utcnow()
    for name, value in columns(kind, obj).items():
        setattr(row, name, value)
    if kind == "subscription":
        row.past_due_since = past_due_since(row.status, previous_status, row.past_due_since, created)
    session.add(row)
    return row


# -- fetching from Stripe ----------------------------------------------------------------


# Where each kind lives in Stripe's API.
PATHS: dict[str, str] = {
    "product": "/v1/products",
    "price": "/v1/prices",
    "customer": "/v1/customers",
    "subscription": "/v1/subscriptions",
    "subscription_schedule": "/v1/subscription_schedules",
    "invoice": "/v1/invoices",
    "billing.meter": "/v1/billing/meters",
    "plan": "/v1/plans",  # legacy prices: servers without /v1/prices (localstripe)
}


def get_json(client: stripe.StripeClient, path: str, params: dict[str, Any] | None = None) -> JSON:
    """GET a Stripe path as plain JSON, through the client's retries, pacing and errors.
    ``raw_request`` rather than the typed resources: building the SDK's objects for a ~3 KB
    subscription, then turning them back into dicts, costs ~0.5 ms of CPU, 15x parsing it (a
    backfill's listing would be bound by that, not by Stripe's rate limit)."""
    params = params or {}
    taken = _OPTIONS.intersection(params)
    if taken:  # raw_request would take these as request options, not send them
        raise ValueError(f"Stripe request parameters named like client options: {sorted(taken)}")
    data = client.raw_request("get", path, **params).data
    return data if isinstance(data, dict) else {}


# Keyword arguments ``raw_request`` keeps for itself (stripe-python 16.1).
_OPTIONS = frozenset(
    {
        "api_key",
        "stripe_version",
        "stripe_account",
        "stripe_context",
        "max_network_retries",
        "idempotency_key",
        "content_type",
        "headers",
        "base",
        "usage",
    }
)


def list_json(client: stripe.StripeClient, path: str, params: dict[str, Any]) -> Iterator[JSON]:
    """Every object a Stripe list endpoint pages out (``starting_after``), as plain JSON."""
    params = dict(params)
    while True:
        page = get_json(client, path, params)
        data = page.get("data") or []
        yield from data
        if not page.get("has_more") or not data:
            return
        params["starting_after"] = data[-1]["id"]


def fetch(client: stripe.StripeClient, kind: str, stripe_id: str) -> JSON | None:
    """The current object, or None when Stripe no longer has it (deleted)."""
    path = PATHS["plan" if kind == "price" and stripe_id.startswith("plan_") else kind]
    try:
        obj = get_json(client, f"{path}/{quote(stripe_id, safe='')}")
    except stripe.StripeError as exc:  # 404 bodies of fakes are not always JSON errors
        if exc.http_status == 404:
            return None
        raise
    if kind == "subscription":
        obj = complete_items(client, obj)
    return obj


def complete_items(client: stripe.StripeClient | None, sub: JSON) -> JSON:
    """The subscription with every item embedded: Stripe embeds only the first 10."""
    rows, complete = embedded_items(sub)
    if complete:
        return sub
    if client is None:
        log.warning("stripe_items_truncated", subscription=sub.get("id"), embedded=len(rows))
        return sub
    items = list(list_json(client, "/v1/subscription_items", {"subscription": str(sub["id"]), "limit": 100}))
    out = dict(sub)
    out["items"] = {**(sub.get("items") or {}), "data": items, "has_more": False}
    return out


def iter_all(client: stripe.StripeClient, kind: str, *, starting_after: str | None = None) -> Iterator[JSON]:
    """Every object of a kind, oldest cursor first as Stripe pages them (newest first)."""
    params: dict[str, Any] = {"limit": 100}
    if starting_after:
        params["starting_after"] = starting_after
    if kind == "subscription":
        params["status"] = "all"
    yield from list_json(client, PATHS[kind], params)
