"""Subscription operations shared by the API handlers, schedules and the clock.

Creating a subscription, changing its items (with proration), resetting its billing
cycle, and the status transitions that follow payments and cancellations. Callers
hold the emulator lock and emit ``customer.subscription.updated`` themselves when
they change an existing subscription (so one API call yields one update event).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import billing
from .clock import period_boundary
from .errors import StripeAPIError, invalid_param
from .forms import Params
from .store import JSON

if TYPE_CHECKING:
    from .emulator import Emulator

__all__ = ["ItemSpec", "apply_item_changes", "cancel_now", "new_item", "parse_item_specs"]

PRORATION_BEHAVIORS = ("create_prorations", "always_invoice", "none")
ITEM_PARAMS = ("id", "price", "quantity", "deleted", "metadata", "clear_usage", "plan")


@dataclass
class ItemSpec:
    id: str | None
    price: str | None
    quantity: int | None
    deleted: bool
    metadata: dict[str, str] | None


def parse_item_specs(p: Params, key: str = "items") -> list[ItemSpec]:
    specs: list[ItemSpec] = []
    for item in p.objects(key, ITEM_PARAMS):
        qty = item.integer("quantity")
        if qty is not None and qty < 0:
            raise invalid_param(f"{key}[quantity]", "Quantity must be non-negative")
        specs.append(
            ItemSpec(
                id=item.string("id"),
                price=item.string("price") or item.string("plan"),
                quantity=qty,
                deleted=bool(item.boolean("deleted", False)),
                metadata=item.metadata(),
            )
        )
    return specs


def recurring_price(emu: Emulator, price_id: str, param: str) -> JSON:
    price = emu.store.get("price", price_id, param)
    if price["type"] != "recurring":
        raise invalid_param(
            param,
            f"The price specified ({price_id}) is not recurring. Subscriptions only accept recurring prices.",
        )
    return price


def is_metered(price: JSON) -> bool:
    return bool((price.get("recurring") or {}).get("usage_type") == "metered")


def new_item(
    emu: Emulator, sub: JSON, price: JSON, quantity: int | None, metadata: dict[str, str] | None
) -> JSON:
    item: JSON = {
        "id": emu.ids.new("si", 14),
        "object": "subscription_item",
        "billing_thresholds": None,
        "created": emu.now(),
        "discounts": [],
        "metadata": dict(metadata or {}),
        "price": price["id"],
        "quantity": None if is_metered(price) else (1 if quantity is None else quantity),
        "subscription": sub["id"],
        "tax_rates": [],
    }
    emu.store.add(item)
    sub["_items"].append(item["id"])
    return item


def items_of(emu: Emulator, sub: JSON) -> list[JSON]:
    return [emu.store.objects[i] for i in sub["_items"] if i in emu.store.objects]


def check_interval(sub: JSON, price: JSON, param: str) -> None:
    if price["currency"] != sub["currency"]:
        raise invalid_param(param, "All prices on a subscription must have the same currency.")


def reset_cycle(emu: Emulator, sub: JSON, anchor: int) -> None:
    sub["_anchor"] = anchor
    sub["_cycle"] = 0
    sub["billing_cycle_anchor"] = anchor
    sub["_period_start"] = anchor
    sub["_period_end"] = period_boundary(anchor, sub["_interval"], sub["_interval_count"], 1)


def period_lines(emu: Emulator, sub: JSON) -> list[JSON]:
    """Lines charging every licensed item for the current period."""
    return [
        billing.subscription_line(emu, sub, item, start=sub["_period_start"], end=sub["_period_end"])
        for item in items_of(emu, sub)
        if not is_metered(emu.store.objects[item["price"]])
    ]


def apply_item_changes(
    emu: Emulator,
    sub: JSON,
    specs: list[ItemSpec],
    *,
    proration_behavior: str,
    proration_date: int | None = None,
    replace: bool = False,
    reset_anchor: bool = False,
) -> None:
    """Add, remove, re-price or re-quantify items, prorating as asked.

    With ``replace`` (schedule phases), ``specs`` is the complete new item list.
    """
    at = emu.now() if proration_date is None else proration_date
    prorate = (
        proration_behavior != "none"
        and sub["status"] != "trialing"
        and sub["_period_start"] < at < sub["_period_end"]
    )
    credits: list[tuple[JSON, JSON, int]] = []
    charges: list[tuple[JSON, JSON, int]] = []
    new_interval: tuple[str, int] | None = None

    def note_interval(price: JSON) -> None:
        nonlocal new_interval
        rec = price["recurring"]
        if (rec["interval"], rec["interval_count"]) != (sub["_interval"], sub["_interval_count"]):
            new_interval = (rec["interval"], rec["interval_count"])

    if replace:
        wanted = {s.price: s for s in specs if s.price}
        for item in items_of(emu, sub):
            if item["price"] not in wanted:
                specs = [*specs, ItemSpec(item["id"], None, None, True, None)]
            else:
                wanted[item["price"]].id = item["id"]

    for n, spec in enumerate(specs):
        param = f"items[{n}]"
        if spec.id is not None:
            item = emu.store.get("subscription_item", spec.id, f"{param}[id]")
            if item["subscription"] != sub["id"]:
                raise invalid_param(f"{param}[id]", f"Item {spec.id} is not on subscription {sub['id']}")
            old_price = emu.store.objects[item["price"]]
            if spec.deleted:
                credits.append((item, old_price, item["quantity"] or 0))
                sub["_items"].remove(item["id"])
                emu.store.remove(item["id"])
                continue
            price = old_price
            if spec.price is not None and spec.price != item["price"]:
                price = recurring_price(emu, spec.price, f"{param}[price]")
                check_interval(sub, price, f"{param}[price]")
                note_interval(price)
            quantity = item["quantity"] if spec.quantity is None else spec.quantity
            if is_metered(price):
                quantity = None
            if price["id"] != old_price["id"] or quantity != item["quantity"]:
                credits.append((item, old_price, item["quantity"] or 0))
                charges.append((item, price, quantity or 0))
                item["price"] = price["id"]
                item["quantity"] = quantity
            if spec.metadata is not None:
                item["metadata"].update({k: v for k, v in spec.metadata.items() if v})
                for k in [k for k, v in spec.metadata.items() if not v]:
                    item["metadata"].pop(k, None)
        else:
            if spec.deleted:
                raise invalid_param(f"{param}[deleted]", "deleted requires an item id")
            if spec.price is None:
                raise invalid_param(f"{param}[price]", "Missing required param: price.", "parameter_missing")
            price = recurring_price(emu, spec.price, f"{param}[price]")
            check_interval(sub, price, f"{param}[price]")
            if any(i["price"] == price["id"] for i in items_of(emu, sub)):
                raise invalid_param(
                    f"{param}[price]",
                    "Cannot add multiple subscription items with the same price.",
                )
            note_interval(price)
            item = new_item(emu, sub, price, spec.quantity, spec.metadata)
            charges.append((item, price, item["quantity"] or 0))

    remaining = items_of(emu, sub)
    if not remaining:
        raise StripeAPIError(400, "A subscription must have at least one active item.", param="items")
    intervals = {
        (
            emu.store.objects[i["price"]]["recurring"]["interval"],
            emu.store.objects[i["price"]]["recurring"]["interval_count"],
        )
        for i in remaining
    }
    if len(intervals) > 1:
        raise invalid_param(
            "items",
            "All prices on a subscription must have the same `recurring.interval` and "
            "`recurring.interval_count`.",
        )

    if prorate:
        for item, price, qty in credits:
            if not is_metered(price):
                billing.proration_items(emu, sub, item, price, qty, credit=True, at=at)
    if new_interval is not None or reset_anchor:
        if new_interval is not None:
            sub["_interval"], sub["_interval_count"] = new_interval
        reset_cycle(emu, sub, emu.now())
        if sub["status"] == "trialing":
            return
        invoice = billing.create_invoice(
            emu,
            sub,
            period_lines(emu, sub),
            reason="subscription_update",
            period=(sub["_period_start"], sub["_period_start"]),
        )
        settle(emu, sub, invoice)
        return
    if prorate:
        for item, price, qty in charges:
            if not is_metered(price):
                billing.proration_items(emu, sub, item, price, qty, credit=False, at=at)
        if proration_behavior == "always_invoice" and billing.pending_items(emu, sub):
            invoice = billing.create_invoice(emu, sub, [], reason="subscription_update", period=(at, at))
            settle(emu, sub, invoice)


def settle(emu: Emulator, sub: JSON, invoice: JSON) -> bool:
    """Attempt an invoice and move the subscription's status accordingly."""
    ok = billing.attempt_payment(emu, invoice)
    if ok:
        if sub["status"] in ("past_due", "unpaid", "incomplete") and not billing.open_invoices(
            emu, sub["id"]
        ):
            sub["status"] = "active"
    elif sub["status"] in ("active", "trialing"):
        sub["status"] = "past_due"
    return ok


def cancel_now(emu: Emulator, sub: JSON, reason: str, *, emit: bool = True) -> None:
    now = emu.now()
    sub["status"] = "canceled"
    if sub["canceled_at"] is None:
        sub["canceled_at"] = now
    sub["ended_at"] = now
    sub["cancellation_details"]["reason"] = reason
    for invoice in billing.open_invoices(emu, sub["id"]):
        invoice["auto_advance"] = False
        invoice["next_payment_attempt"] = None
    sched_id = sub.get("schedule")
    if sched_id:
        sched = emu.store.find(sched_id)
        if sched is not None and sched["status"] in ("active", "not_started"):
            sched["status"] = "canceled"
            sched["canceled_at"] = now
            sched["current_phase"] = None
            emu.emit("subscription_schedule.canceled", sched)
    if emit:
        emu.emit("customer.subscription.deleted", sub)
