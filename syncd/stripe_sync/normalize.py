"""Version-tolerant reading of Stripe objects.

Events are rendered in the API version current when they were created (``2017-08-15`` from
old accounts and localstripe, ``2026-10-28.endive`` from the pinned client), so nothing here
assumes one shape:

* a subscription item names its price as ``price`` (an object or an id) or, in old versions,
  only as the legacy ``plan``;
* billing periods sit on each item (API >= 2025-03-31.basil) or on the subscription (older);
* references (``customer``, ``product``) are ids or expanded objects.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

try:  # the ``fast`` extra
    import orjson as _orjson
except ImportError:  # pragma: no cover - exercised by installs without the extra
    _orjson = None  # type: ignore[assignment]

JSON = dict[str, Any]

GRANTING = frozenset({"active", "trialing", "past_due"})
TERMINAL = frozenset({"canceled", "incomplete_expired"})


def plain(obj: Any) -> JSON:
    """A plain dict from a StripeObject (v15+ objects are not dicts) or a dict."""
    to_dict = getattr(obj, "to_dict", None)
    if callable(to_dict):
        data = to_dict(for_json=True)  # decimals (``unit_amount_decimal``) as JSON-safe strings
        return data if isinstance(data, dict) else {}
    return dict(obj) if isinstance(obj, Mapping) else {}


def loads_stripe(document: str | bytes) -> Any:
    """A Stripe event's or object's JSON text, parsed by orjson where installed (2-3x
    ``json``). Only for Stripe's JSON: orjson reads an integer outside 64 bits (below -2**63,
    above 2**64 - 1) as a float where ``json`` keeps it exact, and Stripe's integers are
    64-bit. What orjson refuses (NaN, lone surrogates, nesting past 1,024) is left to ``json``."""
    if _orjson is not None:
        try:
            return _orjson.loads(document)
        except _orjson.JSONDecodeError:
            pass
    return json.loads(document)


# JSON objects here are dicts (json.loads, or the SDK's StripeObject, a dict subclass): the
# checks test ``dict``, a C-level type check, not the ``Mapping`` ABC (~6x slower, and these
# run per item of every subscription of a sweep).


def ref_id(value: Any) -> str | None:
    """The id of a reference that may be an id string or an expanded object."""
    if isinstance(value, str):
        return value or None
    if isinstance(value, dict):
        ident = value.get("id")
        return ident if isinstance(ident, str) else None
    return None


def as_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def object_kind(obj: Mapping[str, Any]) -> str:
    """The mirror kind of an object; a legacy ``plan`` is a price."""
    kind = str(obj.get("object") or "")
    return "price" if kind == "plan" else kind


def metadata(obj: Mapping[str, Any]) -> dict[str, str]:
    meta = obj.get("metadata")
    return {str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else {}


@dataclass(frozen=True, slots=True)
class ItemView:
    id: str | None
    price_id: str | None
    product_id: str | None
    quantity: int
    interval: str | None  # month | year | ... (None: unknown)
    period_start: int | None
    period_end: int | None


@dataclass(frozen=True, slots=True)
class SubscriptionView:
    id: str
    customer_id: str | None
    status: str
    created: int
    items: tuple[ItemView, ...]
    items_complete: bool  # False: the embedded list was cut at 10 and not paginated
    period_start: int | None
    period_end: int | None
    cancel_at_period_end: bool
    cancel_at: int | None
    trial_start: int | None
    trial_end: int | None
    ended_at: int | None
    schedule_id: str | None


def price_of(item: Mapping[str, Any]) -> Mapping[str, Any]:
    """The price object of an item: ``price`` if expanded, else the legacy ``plan``."""
    price = item.get("price")
    if isinstance(price, dict):
        return price
    plan = item.get("plan")
    return plan if isinstance(plan, dict) else {}


def item_view(item: Mapping[str, Any], sub: Mapping[str, Any]) -> ItemView:
    price = price_of(item)
    price_id = ref_id(item.get("price")) or ref_id(price) or ref_id(item.get("plan"))
    recurring = price.get("recurring") if isinstance(price.get("recurring"), dict) else None
    interval = (recurring or {}).get("interval") or price.get("interval")
    quantity = as_int(item.get("quantity"))
    start = as_int(item.get("current_period_start"))
    end = as_int(item.get("current_period_end"))
    return ItemView(
        id=ref_id(item.get("id")),
        price_id=price_id,
        product_id=ref_id(price.get("product")),
        quantity=1 if quantity is None else quantity,
        interval=str(interval) if interval else None,
        period_start=start if start is not None else as_int(sub.get("current_period_start")),
        period_end=end if end is not None else as_int(sub.get("current_period_end")),
    )


def embedded_items(sub: Mapping[str, Any]) -> tuple[list[Mapping[str, Any]], bool]:
    """The item dicts embedded in a subscription and whether that list is complete."""
    items = sub.get("items")
    if isinstance(items, dict):
        data = items.get("data")
        rows: list[Mapping[str, Any]] = (
            [i for i in data if isinstance(i, dict)] if isinstance(data, list) else []
        )
        return rows, not bool(items.get("has_more"))
    if isinstance(items, list):
        listed: list[Mapping[str, Any]] = [i for i in items if isinstance(i, dict)]
        return listed, True
    # Very old shapes: a single plan + quantity on the subscription itself.
    plan = sub.get("plan")
    if isinstance(plan, dict):
        return [{"id": None, "plan": plan, "quantity": sub.get("quantity")}], True
    return [], True


def subscription_view(sub: Mapping[str, Any]) -> SubscriptionView:
    rows, complete = embedded_items(sub)
    items = tuple(item_view(i, sub) for i in rows)
    starts = [i.period_start for i in items if i.period_start is not None]
    ends = [i.period_end for i in items if i.period_end is not None]
    cancel_at = as_int(sub.get("cancel_at"))
    return SubscriptionView(
        id=str(sub.get("id") or ""),
        customer_id=ref_id(sub.get("customer")),
        status=str(sub.get("status") or "incomplete"),
        created=as_int(sub.get("created")) or 0,
        items=items,
        items_complete=complete,
        period_start=min(starts) if starts else as_int(sub.get("current_period_start")),
        period_end=max(ends) if ends else as_int(sub.get("current_period_end")),
        cancel_at_period_end=bool(sub.get("cancel_at_period_end")),
        cancel_at=cancel_at,
        trial_start=as_int(sub.get("trial_start")),
        trial_end=as_int(sub.get("trial_end")),
        ended_at=as_int(sub.get("ended_at")),
        schedule_id=ref_id(sub.get("schedule")),
    )


def invoice_subscription_id(invoice: Mapping[str, Any]) -> str | None:
    """The subscription an invoice bills (legacy ``subscription`` or ``parent.subscription_details``)."""
    legacy = ref_id(invoice.get("subscription"))
    if legacy:
        return legacy
    parent = invoice.get("parent")
    details = parent.get("subscription_details") if isinstance(parent, dict) else None
    return ref_id(details.get("subscription")) if isinstance(details, dict) else None


def price_fields(price: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(product id, interval) of a price or a legacy plan."""
    recurring = price.get("recurring")
    interval = recurring.get("interval") if isinstance(recurring, dict) else price.get("interval")
    if not interval and price.get("type") == "one_time":
        interval = "one_time"
    return ref_id(price.get("product")), str(interval) if interval else None


def fingerprint(kind: str, obj: JSON) -> tuple[Any, ...]:
    """The fields whose difference matters for entitlements (shape-independent)."""
    if kind == "product":
        return (bool(obj.get("active")), obj.get("name"), metadata(obj).get("syncd_plan"))
    if kind == "price":
        return (bool(obj.get("active")), *price_fields(obj))
    if kind == "customer":
        return (bool(obj.get("deleted")), obj.get("name"), obj.get("email"))
    if kind == "subscription":
        v = subscription_view(obj)
        items = tuple(sorted((i.price_id or "", i.quantity) for i in v.items))
        return (
            v.status,
            v.customer_id,
            v.cancel_at_period_end,
            v.cancel_at,
            v.trial_end,
            v.period_end,
            items,
        )
    return (obj.get("status"), ref_id(obj.get("subscription")))
