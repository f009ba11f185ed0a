"""Subscription schedules (``/v1/subscription_schedules``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import scheduling
from ..clock import add_interval
from ..errors import StripeAPIError, invalid_param
from ..forms import Params, apply_metadata
from ..listing import LIST_PARAMS, created_filter, paginate
from ..routing import ApiCall, ApiRoute, retrieve
from ..store import JSON
from ..subscribing import PRORATION_BEHAVIORS, items_of, recurring_price

if TYPE_CHECKING:
    from ..emulator import Emulator

__all__ = ["ROUTES"]

PHASE_PARAMS = (
    "items",
    "start_date",
    "end_date",
    "duration",
    "iterations",
    "proration_behavior",
    "trial_end",
    "trial",
    "metadata",
    "currency",
    "default_payment_method",
    "description",
    "billing_cycle_anchor",
    "collection_method",
    "add_invoice_items",
    "automatic_tax",
    "invoice_settings",
    "discounts",
    "default_tax_rates",
)


def _phase_item(
    emu: Emulator, price_id: str, quantity: int | None, metadata: dict[str, str] | None, param: str
) -> JSON:
    price = recurring_price(emu, price_id, param)
    return {
        "billing_thresholds": None,
        "discounts": [],
        "metadata": dict(metadata or {}),
        "price": price["id"],
        "quantity": quantity if quantity is not None else 1,
        "tax_rates": [],
    }


def _phase(
    emu: Emulator,
    items: list[JSON],
    start: int,
    end: int | None,
    *,
    proration: str,
    metadata: dict[str, str],
    trial_end: int | None = None,
) -> JSON:
    currency = emu.store.objects[items[0]["price"]]["currency"] if items else "usd"
    return {
        "add_invoice_items": [],
        "application_fee_percent": None,
        "billing_cycle_anchor": None,
        "billing_thresholds": None,
        "collection_method": None,
        "currency": currency,
        "default_payment_method": None,
        "default_tax_rates": [],
        "description": None,
        "discounts": [],
        "end_date": end,
        "invoice_settings": None,
        "items": items,
        "metadata": metadata,
        "on_behalf_of": None,
        "proration_behavior": proration,
        "start_date": start,
        "transfer_data": None,
        "trial_end": trial_end,
    }


def _parse_phases(emu: Emulator, p: Params, first_start: int) -> list[JSON]:
    phases: list[JSON] = []
    start = first_start
    raw_phases = p.objects("phases", PHASE_PARAMS)
    if not raw_phases:
        raise invalid_param("phases", "Missing required param: phases.", "parameter_missing")
    for n, ph in enumerate(raw_phases):
        name = f"phases[{n}]"
        if n == 0 and "start_date" in ph:
            start = emu.now() if ph.raw("start_date") == "now" else (ph.integer("start_date") or start)
        items = [
            _phase_item(
                emu, i.req_string("price"), i.integer("quantity"), i.metadata(), f"{name}[items][{k}][price]"
            )
            for k, i in enumerate(
                ph.objects(
                    "items",
                    (
                        "price",
                        "quantity",
                        "metadata",
                        "discounts",
                        "tax_rates",
                        "billing_thresholds",
                        "price_data",
                        "plan",
                    ),
                )
            )
        ]
        if not items:
            raise invalid_param(f"{name}[items]", "Each phase needs at least one item.", "parameter_missing")
        interval = emu.store.objects[items[0]["price"]]["recurring"]
        end: int | None
        if ph.raw("end_date") not in (None, ""):
            end = ph.integer("end_date")
        elif "duration" in ph:
            dur = ph.sub("duration", ("interval", "interval_count"))
            assert dur is not None
            unit = dur.choice("interval", ("day", "week", "month", "year"))
            end = add_interval(start, unit or "month", dur.integer("interval_count", 1) or 1)
        elif "iterations" in ph:
            end = add_interval(
                start, interval["interval"], interval["interval_count"] * (ph.integer("iterations") or 1)
            )
        else:
            end = add_interval(start, interval["interval"], interval["interval_count"])
        assert end is not None
        if end <= start:
            raise invalid_param(f"{name}[end_date]", "Phase end_date must be after its start_date.")
        behavior = ph.choice("proration_behavior", PRORATION_BEHAVIORS, "create_prorations")
        assert behavior is not None
        phases.append(
            _phase(
                emu,
                items,
                start,
                end,
                proration=behavior,
                metadata=ph.metadata() or {},
                trial_end=ph.integer("trial_end"),
            )
        )
        start = end
    return phases


def _shell(emu: Emulator, customer: str, end_behavior: str) -> JSON:
    return {
        "id": emu.ids.new("sub_sched"),
        "object": "subscription_schedule",
        "application": None,
        "billing_mode": {"flexible": None, "type": "classic"},
        "canceled_at": None,
        "completed_at": None,
        "created": emu.now(),
        "current_phase": None,
        "customer_account": None,
        "customer": customer,
        "default_settings": {
            "application_fee_percent": None,
            "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
            "billing_cycle_anchor": "automatic",
            "billing_thresholds": None,
            "collection_method": "charge_automatically",
            "default_payment_method": None,
            "description": None,
            "invoice_settings": {"account_tax_ids": None, "days_until_due": None, "issuer": {"type": "self"}},
            "on_behalf_of": None,
            "transfer_data": None,
        },
        "end_behavior": end_behavior,
        "livemode": False,
        "metadata": {},
        "phases": [],
        "released_at": None,
        "released_subscription": None,
        "status": "not_started",
        "subscription": None,
        "test_clock": None,
        "_phase": None,
    }


def create_schedule(emu: Emulator, call: ApiCall) -> JSON:
    p = call.params(
        (
            "customer",
            "from_subscription",
            "phases",
            "start_date",
            "end_behavior",
            "metadata",
            "default_settings",
        )
    )
    from_sub = p.string("from_subscription")
    if from_sub is not None:
        if set(p.data) - {"from_subscription", "expand"}:
            raise StripeAPIError(
                400,
                "You cannot set other parameters when using from_subscription.",
                param="from_subscription",
            )
        sub = emu.store.get("subscription", from_sub, "from_subscription")
        if sub["schedule"]:
            raise invalid_param(
                "from_subscription",
                f"The subscription is already managed by the subscription schedule {sub['schedule']}.",
            )
        if sub["status"] in ("canceled", "incomplete_expired"):
            raise invalid_param("from_subscription", "The subscription is canceled.")
        sched = _shell(emu, sub["customer"], "release")
        items = [
            _phase_item(emu, i["price"], i["quantity"], i["metadata"], "from_subscription")
            for i in items_of(emu, sub)
        ]
        sched["phases"] = [
            _phase(
                emu,
                items,
                sub["_period_start"],
                sub["_period_end"],
                proration="create_prorations",
                metadata={},
            )
        ]
        sched["status"] = "active"
        sched["subscription"] = sub["id"]
        sched["current_phase"] = {"end_date": sub["_period_end"], "start_date": sub["_period_start"]}
        sched["_phase"] = 0
        emu.store.add(sched)
        emu.emit("subscription_schedule.created", sched)
        before = emu.render(sub)
        sub["schedule"] = sched["id"]
        emu.emit_update("customer.subscription.updated", sub, before)
        return emu.render(sched)
    customer = emu.store.get("customer", p.req_string("customer"), "customer")
    sched = _shell(
        emu, customer["id"], p.choice("end_behavior", ("release", "cancel"), "release") or "release"
    )
    start = emu.now() if p.raw("start_date") in (None, "", "now") else (p.integer("start_date") or emu.now())
    data = dict(p.data)
    if (
        "phases" in data
        and isinstance(data["phases"], list)
        and data["phases"]
        and "start_date" not in data["phases"][0]
    ):
        data["phases"][0] = {**data["phases"][0], "start_date": start}
    sched["phases"] = _parse_phases(emu, Params(data), start)
    apply_metadata(sched["metadata"], p.metadata(), p.raw("metadata"))
    emu.store.add(sched)
    emu.emit("subscription_schedule.created", sched)
    if sched["phases"][0]["start_date"] <= emu.now():
        scheduling.transition(emu, sched)  # starts it now
    return emu.render(sched)


def update_schedule(emu: Emulator, call: ApiCall) -> JSON:
    sched = emu.store.get("subscription_schedule", call.arg("id"))
    p = call.params(("phases", "end_behavior", "metadata", "proration_behavior", "default_settings"))
    if sched["status"] not in ("active", "not_started"):
        raise StripeAPIError(
            400,
            f"You cannot update a subscription schedule that is currently in the `{sched['status']}` status.",
        )
    before = emu.render(sched)
    if "end_behavior" in p:
        sched["end_behavior"] = p.choice("end_behavior", ("release", "cancel"))
    apply_metadata(sched["metadata"], p.metadata(), p.raw("metadata"))
    if "phases" in p:
        first = sched["phases"][0]["start_date"] if sched["phases"] else emu.now()
        phases = _parse_phases(emu, p, first)
        if sched["status"] == "active":
            idx = scheduling.current_index({"phases": phases}, emu.now())
            if idx is None:
                raise invalid_param("phases", "The phases must cover the current time of an active schedule.")
            sched["phases"] = phases
            sched["_phase"] = idx
            sched["current_phase"] = {
                "end_date": phases[idx]["end_date"],
                "start_date": phases[idx]["start_date"],
            }
            emu.emit_update("subscription_schedule.updated", sched, before)
            scheduling.sync_current_phase(emu, sched, idx)
            return emu.render(sched)
        sched["phases"] = phases
    emu.emit_update("subscription_schedule.updated", sched, before)
    return emu.render(sched)


def release_schedule(emu: Emulator, call: ApiCall) -> JSON:
    sched = emu.store.get("subscription_schedule", call.arg("id"))
    call.params(("preserve_cancel_date",))
    if sched["status"] not in ("active", "not_started"):
        raise StripeAPIError(
            400,
            "You cannot release a subscription schedule that is currently in the "
            f"`{sched['status']}` status.",
        )
    scheduling.release(emu, sched)
    return emu.render(sched)


def cancel_schedule(emu: Emulator, call: ApiCall) -> JSON:
    from ..subscribing import cancel_now

    sched = emu.store.get("subscription_schedule", call.arg("id"))
    call.params(("invoice_now", "prorate"))
    if sched["status"] not in ("active", "not_started"):
        raise StripeAPIError(
            400,
            f"You cannot cancel a subscription schedule that is currently in the `{sched['status']}` status.",
        )
    sub = emu.store.find(sched["subscription"]) if sched["subscription"] else None
    if sub is not None and sub["status"] not in ("canceled", "incomplete_expired"):
        cancel_now(emu, sub, "cancellation_requested")  # also cancels the schedule
    else:
        sched.update(status="canceled", canceled_at=emu.now(), current_phase=None, _phase=None)
        emu.emit("subscription_schedule.canceled", sched)
    return emu.render(sched)


def list_schedules(emu: Emulator, call: ApiCall) -> JSON:
    p = call.params((*LIST_PARAMS, "customer", "scheduled", "completed_at", "released_at", "canceled_at"))
    items = emu.store.newest_first("subscription_schedule")
    customer = p.string("customer")
    if customer is not None:
        items = [s for s in items if s["customer"] == customer]
    items = [o for o in items if created_filter(p)(o)]
    return paginate(items, p, "/v1/subscription_schedules", emu.render)


ROUTES = [
    ApiRoute("POST", "/v1/subscription_schedules", create_schedule),
    ApiRoute("GET", "/v1/subscription_schedules", list_schedules),
    ApiRoute("GET", "/v1/subscription_schedules/{id}", retrieve("subscription_schedule")),
    ApiRoute("POST", "/v1/subscription_schedules/{id}", update_schedule),
    ApiRoute("POST", "/v1/subscription_schedules/{id}/release", release_schedule),
    ApiRoute("POST", "/v1/subscription_schedules/{id}/cancel", cancel_schedule),
]
