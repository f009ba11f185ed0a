"""Subscriptions and subscription items (``/v1/subscriptions``, ``/v1/subscription_items``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import billing
from ..clock import period_boundary
from ..errors import StripeAPIError, card_declined, invalid_param
from ..forms import Params, apply_metadata
from ..listing import LIST_PARAMS, created_filter, paginate
from ..payments import payment_method_for, payment_succeeds
from ..routing import ApiCall, ApiRoute, retrieve
from ..store import JSON
from ..subscribing import (
    PRORATION_BEHAVIORS,
    ItemSpec,
    apply_item_changes,
    cancel_now,
    is_metered,
    items_of,
    new_item,
    parse_item_specs,
    period_lines,
    recurring_price,
)

if TYPE_CHECKING:
    from ..emulator import Emulator

__all__ = ["ROUTES", "create_from_phase"]

CREATE_PARAMS = (
    "customer",
    "items",
    "trial_period_days",
    "trial_end",
    "trial_from_plan",
    "default_payment_method",
    "metadata",
    "cancel_at_period_end",
    "cancel_at",
    "payment_behavior",
    "proration_behavior",
    "collection_method",
    "description",
    "trial_settings",
    "off_session",
    "currency",
    "automatic_tax",
    "payment_settings",
)
UPDATE_PARAMS = (
    "items",
    "cancel_at_period_end",
    "cancel_at",
    "proration_behavior",
    "proration_date",
    "trial_end",
    "trial_from_plan",
    "metadata",
    "default_payment_method",
    "description",
    "billing_cycle_anchor",
    "payment_behavior",
    "cancellation_details",
    "pause_collection",
    "off_session",
    "trial_settings",
    "automatic_tax",
    "payment_settings",
)
DEAD = ("canceled", "incomplete_expired")


def _subscription_shell(emu: Emulator, customer: JSON, price: JSON) -> JSON:
    now = emu.now()
    rec = price["recurring"]
    return {
        "id": emu.ids.new("sub"),
        "object": "subscription",
        "application": None,
        "application_fee_percent": None,
        "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
        "billing_cycle_anchor": now,
        "billing_cycle_anchor_config": None,
        "billing_mode": {"flexible": None, "type": "classic"},
        "billing_schedules": [],
        "customer_account": None,
        "managed_payments": None,
        "billing_thresholds": None,
        "cancel_at": None,
        "cancel_at_period_end": False,
        "canceled_at": None,
        "cancellation_details": {"comment": None, "feedback": None, "reason": None},
        "collection_method": "charge_automatically",
        "created": now,
        "currency": price["currency"],
        "customer": customer["id"],
        "days_until_due": None,
        "default_payment_method": None,
        "default_source": None,
        "default_tax_rates": [],
        "description": None,
        "discounts": [],
        "ended_at": None,
        "invoice_settings": {"account_tax_ids": None, "issuer": {"type": "self"}},
        "latest_invoice": None,
        "livemode": False,
        "metadata": {},
        "next_pending_invoice_item_invoice": None,
        "on_behalf_of": None,
        "pause_collection": None,
        "payment_settings": {
            "payment_method_options": None,
            "payment_method_types": None,
            "save_default_payment_method": "off",
        },
        "pending_invoice_item_interval": None,
        "pending_setup_intent": None,
        "pending_update": None,
        "schedule": None,
        "start_date": now,
        "status": "incomplete",
        "test_clock": customer["test_clock"],
        "transfer_data": None,
        "trial_end": None,
        "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
        "trial_start": None,
        "_items": [],
        "_anchor": now,
        "_cycle": 0,
        "_interval": rec["interval"],
        "_interval_count": rec["interval_count"],
        "_period_start": now,
        "_period_end": period_boundary(now, rec["interval"], rec["interval_count"], 1),
        "_trial_will_end_at": None,
        "_expires_at": None,
    }


def _trial_end(emu: Emulator, p: Params, prices: list[JSON]) -> int | None:
    now = emu.now()
    raw = p.raw("trial_end")
    if raw == "now":
        return None
    if raw not in (None, ""):
        end = p.integer("trial_end")
        assert end is not None
        if end <= now:
            raise invalid_param("trial_end", "Invalid timestamp: must be in the future.")
        return end
    days = p.integer("trial_period_days")
    if days is None and p.boolean("trial_from_plan", False):
        days = max((pr["recurring"].get("trial_period_days") or 0) for pr in prices) or None
    if days:
        return now + days * 86_400
    return None


def start_subscription(
    emu: Emulator,
    customer: JSON,
    specs: list[ItemSpec],
    *,
    trial_end: int | None,
    behavior: str = "allow_incomplete",
    default_pm: str | None = None,
    metadata: dict[str, str] | None = None,
    schedule: str | None = None,
    apply: Params | None = None,
) -> JSON:
    if not specs:
        raise invalid_param("items", "Missing required param: items.", "parameter_missing")
    prices = [recurring_price(emu, s.price or "", f"items[{n}][price]") for n, s in enumerate(specs)]
    for n, price in enumerate(prices):
        if not price["active"]:
            raise invalid_param(f"items[{n}][price]", f"The price specified is inactive: {price['id']}")
    sub = _subscription_shell(emu, customer, prices[0])
    sub["default_payment_method"] = default_pm
    sub["schedule"] = schedule
    if metadata:
        sub["metadata"].update(metadata)
    now = emu.now()
    if trial_end is not None:
        sub.update(status="trialing", trial_start=now, trial_end=trial_end, _period_end=trial_end)
        sub["_trial_will_end_at"] = max(now, trial_end - emu.config.trial_will_end_seconds)
    if apply is not None:
        _apply_simple(emu, sub, apply)
    pm = payment_method_for(emu, customer, sub)
    amount = sum(
        billing.item_amount(pr, s.quantity if s.quantity is not None else 1)
        for pr, s in zip(prices, specs, strict=True)
        if not is_metered(pr)
    )
    will_pay = trial_end is not None or amount == 0 or payment_succeeds(emu, pm)
    if behavior == "error_if_incomplete" and not will_pay:
        raise card_declined()
    emu.store.add(sub)
    for spec, price in zip(specs, prices, strict=True):
        new_item(emu, sub, price, spec.quantity, spec.metadata)
    # validates that all intervals match (and rolls back on error)
    intervals = {(pr["recurring"]["interval"], pr["recurring"]["interval_count"]) for pr in prices}
    if len(intervals) > 1 or len({pr["currency"] for pr in prices}) > 1:
        for item_id in sub["_items"]:
            emu.store.remove(item_id)
        emu.store.remove(sub["id"])
        raise invalid_param(
            "items",
            "All prices on a subscription must have the same currency, `recurring.interval` "
            "and `recurring.interval_count`.",
        )
    lines = period_lines(emu, sub)
    if trial_end is not None:
        for line in lines:
            line["amount"] = line["subtotal"] = 0
            line["description"] = f"Trial period for {line['description'].split(f' {billing.TIMES} ', 1)[-1]}"
    invoice = billing.create_invoice(emu, sub, lines, reason="subscription_create", period=(now, now))
    if trial_end is not None:
        sub["status"] = "trialing"
    elif behavior == "default_incomplete" and invoice["amount_due"] > 0:
        sub["status"] = "incomplete"
    else:
        sub["status"] = "active" if will_pay else "incomplete"
    if sub["status"] == "incomplete":
        sub["_expires_at"] = now + emu.config.incomplete_expiry_seconds
    emu.emit("customer.subscription.created", sub)
    if behavior != "default_incomplete" or invoice["amount_due"] == 0:
        billing.attempt_payment(emu, invoice)
    return sub


def _apply_simple(emu: Emulator, sub: JSON, p: Params) -> None:
    """Fields that need no billing logic (shared by create and update)."""
    if "description" in p:
        sub["description"] = p.string("description")
    if "default_payment_method" in p:
        pm = p.string("default_payment_method")
        if pm is not None and emu.store.find(pm) is None and not pm.startswith("pm_card_"):
            raise invalid_param(
                "default_payment_method", f"No such PaymentMethod: '{pm}'", "resource_missing"
            )
        sub["default_payment_method"] = pm
    apply_metadata(sub["metadata"], p.metadata(), p.raw("metadata"))
    settings = p.sub("trial_settings", ("end_behavior",))
    if settings is not None:
        end = settings.sub("end_behavior", ("missing_payment_method",))
        if end is not None:
            sub["trial_settings"]["end_behavior"]["missing_payment_method"] = end.choice(
                "missing_payment_method", ("cancel", "create_invoice", "pause"), "create_invoice"
            )
    if "pause_collection" in p:
        pc = p.sub("pause_collection", ("behavior", "resumes_at"))
        sub["pause_collection"] = (
            None
            if pc is None
            else {"behavior": pc.string("behavior"), "resumes_at": pc.integer("resumes_at")}
        )
    _apply_cancel_fields(emu, sub, p)


def _apply_cancel_fields(emu: Emulator, sub: JSON, p: Params) -> None:
    if "cancel_at_period_end" in p:
        flag = bool(p.boolean("cancel_at_period_end", False))
        sub["cancel_at_period_end"] = flag
        sub["cancel_at"] = sub["_period_end"] if flag else None
        sub["canceled_at"] = emu.now() if flag else None
        sub["cancellation_details"]["reason"] = "cancellation_requested" if flag else None
    if "cancel_at" in p:
        at = p.integer("cancel_at")
        sub["cancel_at"] = at
        sub["cancel_at_period_end"] = at is not None and at == sub["_period_end"]
        sub["canceled_at"] = emu.now() if at is not None else None
        sub["cancellation_details"]["reason"] = "cancellation_requested" if at else None
    details = p.sub("cancellation_details", ("comment", "feedback"))
    if details is not None:
        sub["cancellation_details"]["comment"] = details.string("comment")
        sub["cancellation_details"]["feedback"] = details.string("feedback")


def create_subscription(emu: Emulator, call: ApiCall) -> JSON:
    p = call.params(CREATE_PARAMS)
    customer = emu.store.get("customer", p.req_string("customer"), "customer")
    if (
        p.choice("collection_method", ("charge_automatically", "send_invoice"), "charge_automatically")
        != "charge_automatically"
    ):
        raise invalid_param(
            "collection_method", "The emulator only supports collection_method=charge_automatically."
        )
    specs = parse_item_specs(p)
    prices = [recurring_price(emu, s.price or "", f"items[{n}][price]") for n, s in enumerate(specs)]
    behavior = p.choice(
        "payment_behavior",
        ("allow_incomplete", "default_incomplete", "error_if_incomplete", "pending_if_incomplete"),
        "allow_incomplete",
    )
    assert behavior is not None
    sub = start_subscription(
        emu,
        customer,
        specs,
        trial_end=_trial_end(emu, p, prices),
        behavior=behavior,
        apply=p,
    )
    return emu.render(sub)


def create_from_phase(emu: Emulator, sched: JSON, phase: JSON) -> JSON:
    customer = emu.store.objects[sched["customer"]]
    specs = [ItemSpec(None, i["price"], i["quantity"], False, dict(i["metadata"])) for i in phase["items"]]
    return start_subscription(
        emu,
        customer,
        specs,
        trial_end=phase.get("trial_end"),
        schedule=sched["id"],
        metadata=phase["metadata"],
    )


def update_subscription(emu: Emulator, call: ApiCall) -> JSON:
    sub = emu.store.get("subscription", call.arg("id"))
    p = call.params(UPDATE_PARAMS)
    if sub["status"] in DEAD:
        allowed = {"metadata", "cancellation_details", "expand"}
        if set(p.data) - allowed:
            raise StripeAPIError(
                400, "A canceled subscription can only update its cancellation_details and metadata."
            )
    before = emu.render(sub)
    behavior = p.choice("proration_behavior", PRORATION_BEHAVIORS, "create_prorations")
    assert behavior is not None
    specs = parse_item_specs(p)
    anchor = p.choice("billing_cycle_anchor", ("now", "unchanged"), "unchanged")
    _refuse_unpaid_update(emu, sub, p, specs, behavior, anchor == "now")
    _apply_simple(emu, sub, p)
    if specs or anchor == "now":
        apply_item_changes(
            emu,
            sub,
            specs,
            proration_behavior=behavior,
            proration_date=p.integer("proration_date"),
            reset_anchor=anchor == "now",
        )
    if "trial_end" in p:
        _update_trial(emu, sub, p)
    emu.emit_update("customer.subscription.updated", sub, before)
    if p.raw("trial_end") == "now" and sub["status"] == "trialing":
        from ..lifecycle import renew

        sub["_period_end"] = emu.now()
        renew(emu, sub)
    return emu.render(sub)


def _refuse_unpaid_update(
    emu: Emulator, sub: JSON, p: Params, specs: list[ItemSpec], proration: str, reset: bool
) -> None:
    """``payment_behavior=error_if_incomplete``: an update whose immediate invoice the payment
    method would decline fails with a 402 card error and changes nothing (Stripe's rule).

    An immediate invoice happens for ``always_invoice`` proration of a re-priced or added item,
    a billing-cycle reset, or an interval change; the emulator judges it before applying."""
    if p.choice("payment_behavior", _PAYMENT_BEHAVIORS, "allow_incomplete") != "error_if_incomplete":
        return
    if sub["status"] == "trialing" or not any(s.price or s.quantity for s in specs if not s.deleted):
        return
    interval_change = any(
        s.price
        and s.price in emu.store.objects
        and (emu.store.objects[s.price].get("recurring") or {}).get("interval") != sub["_interval"]
        for s in specs
    )
    if not (proration == "always_invoice" or reset or interval_change):
        return
    customer = emu.store.objects[sub["customer"]]
    if not payment_succeeds(emu, payment_method_for(emu, customer, sub)):
        raise card_declined()


_PAYMENT_BEHAVIORS = (
    "allow_incomplete",
    "default_incomplete",
    "error_if_incomplete",
    "pending_if_incomplete",
)


def _update_trial(emu: Emulator, sub: JSON, p: Params) -> None:
    if p.raw("trial_end") == "now":
        return
    end = p.integer("trial_end")
    if end is None or end <= emu.now():
        raise invalid_param("trial_end", "Invalid timestamp: must be in the future.")
    if sub["status"] not in ("trialing", "active"):
        raise invalid_param("trial_end", "Only active or trialing subscriptions can get a trial.")
    sub.update(status="trialing", trial_end=end, _period_end=end)
    if sub["trial_start"] is None:
        sub["trial_start"] = emu.now()
    sub["_trial_will_end_at"] = max(emu.now(), end - emu.config.trial_will_end_seconds)


def cancel_subscription(emu: Emulator, call: ApiCall) -> JSON:
    sub = emu.store.get("subscription", call.arg("id"))
    p = call.params(("invoice_now", "prorate", "cancellation_details"))
    if sub["status"] in DEAD:
        raise StripeAPIError(400, "This subscription has already been canceled.")
    details = p.sub("cancellation_details", ("comment", "feedback"))
    if details is not None:
        sub["cancellation_details"]["comment"] = details.string("comment")
        sub["cancellation_details"]["feedback"] = details.string("feedback")
    cancel_now(emu, sub, "cancellation_requested")
    return emu.render(sub)


def list_subscriptions(emu: Emulator, call: ApiCall) -> JSON:
    p = call.params(
        (
            *LIST_PARAMS,
            "customer",
            "price",
            "status",
            "test_clock",
            "current_period_end",
            "current_period_start",
        )
    )
    items = emu.store.newest_first("subscription")
    status = p.string("status")
    if status is None:
        items = [s for s in items if s["status"] not in DEAD]
    elif status != "all":
        items = [s for s in items if s["status"] == status]
    customer = p.string("customer")
    if customer is not None:
        items = [s for s in items if s["customer"] == customer]
    price = p.string("price")
    if price is not None:
        items = [s for s in items if any(i["price"] == price for i in items_of(emu, s))]
    items = [o for o in items if created_filter(p)(o)]
    return paginate(items, p, "/v1/subscriptions", emu.render)


ROUTES = [
    ApiRoute("POST", "/v1/subscriptions", create_subscription),
    ApiRoute("GET", "/v1/subscriptions", list_subscriptions),
    ApiRoute("GET", "/v1/subscriptions/{id}", retrieve("subscription")),
    ApiRoute("POST", "/v1/subscriptions/{id}", update_subscription),
    ApiRoute("DELETE", "/v1/subscriptions/{id}", cancel_subscription),
]
