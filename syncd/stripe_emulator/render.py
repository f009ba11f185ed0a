"""Rendering stored objects into the JSON the API returns.

Most objects are stored in their API shape and rendered by dropping private keys.
Subscriptions, subscription items and invoices are assembled: a subscription embeds
its items as a list object (first 10, ``has_more`` beyond), each item embeds its
price (and the legacy ``plan`` view of it) and carries the billing period
(``current_period_start``/``current_period_end``, as in API versions since
2025-03-31.basil).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .listing import list_object
from .store import JSON, public

if TYPE_CHECKING:
    from .emulator import Emulator

__all__ = ["plan_view", "render"]

EMBEDDED_LIST_SIZE = 10


def plan_view(price: JSON) -> JSON:
    """The legacy ``plan`` object Stripe still shows next to a recurring price."""
    recurring = price.get("recurring") or {}
    return {
        "id": price["id"],
        "object": "plan",
        "active": price["active"],
        "amount": price["unit_amount"],
        "amount_decimal": price["unit_amount_decimal"],
        "billing_scheme": price["billing_scheme"],
        "created": price["created"],
        "currency": price["currency"],
        "interval": recurring.get("interval"),
        "interval_count": recurring.get("interval_count"),
        "livemode": False,
        "metadata": dict(price["metadata"]),
        "meter": recurring.get("meter"),
        "nickname": price["nickname"],
        "product": price["product"],
        "tiers_mode": None,
        "transform_usage": None,
        "trial_period_days": recurring.get("trial_period_days"),
        "usage_type": recurring.get("usage_type", "licensed"),
    }


def render_item(emu: Emulator, item: JSON) -> JSON:
    out = public(item)
    price = emu.store.objects.get(item["price"])
    if price is not None:
        out["price"] = public(price)
        out["plan"] = plan_view(price)
    sub = emu.store.objects.get(item["subscription"])
    if sub is not None:
        out["current_period_start"] = sub["_period_start"]
        out["current_period_end"] = sub["_period_end"]
    return out


def item_objects(emu: Emulator, sub: JSON) -> list[JSON]:
    return [emu.store.objects[i] for i in sub["_items"] if i in emu.store.objects]


def render_subscription(emu: Emulator, sub: JSON) -> JSON:
    out = public(sub)
    items = item_objects(emu, sub)
    out["items"] = list_object(
        [render_item(emu, i) for i in items[:EMBEDDED_LIST_SIZE]],
        f"/v1/subscription_items?subscription={sub['id']}",
        len(items) > EMBEDDED_LIST_SIZE,
    )
    return out


def render_invoice(emu: Emulator, invoice: JSON) -> JSON:
    out = public(invoice)
    lines = [public(line) for line in invoice["_lines"]]
    out["lines"] = list_object(
        lines[:EMBEDDED_LIST_SIZE],
        f"/v1/invoices/{invoice['id']}/lines",
        len(lines) > EMBEDDED_LIST_SIZE,
    )
    return out


def render(emu: Emulator, obj: JSON) -> JSON:
    kind = obj["object"]
    if kind == "subscription":
        return render_subscription(emu, obj)
    if kind == "subscription_item":
        return render_item(emu, obj)
    if kind == "invoice":
        return render_invoice(emu, obj)
    return public(obj)
