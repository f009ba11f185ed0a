"""Billing meters, meter events, adjustments and event summaries (``/v1/billing/…``)."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from .. import metering
from ..clock import DAY
from ..errors import StripeAPIError, invalid_param
from ..listing import LIST_PARAMS, list_object, paginate
from ..routing import ApiCall, ApiRoute, retrieve
from ..store import JSON, public

if TYPE_CHECKING:
    from ..emulator import Emulator

__all__ = ["ROUTES"]

#: Stripe enforces identifier uniqueness over a rolling window of at least 24 hours.
DEDUPE_WINDOW = DAY
#: Meter event adjustments can cancel an event only within 24 hours of its receipt.
CANCEL_WINDOW = DAY
#: Meter event timestamps must be within the past 35 days or up to 5 minutes ahead.
MAX_PAST, MAX_FUTURE = 35 * DAY, 300


def create_meter(emu: Emulator, call: ApiCall) -> JSON:
    p = call.params(
        (
            "display_name",
            "event_name",
            "default_aggregation",
            "customer_mapping",
            "value_settings",
            "event_time_window",
        )
    )
    event_name = p.req_string("event_name")
    if any(m["event_name"] == event_name and m["status"] == "active" for m in emu.store.all("billing.meter")):
        raise invalid_param("event_name", f"An active meter with event_name '{event_name}' already exists.")
    agg = p.sub("default_aggregation", ("formula",))
    if agg is None:
        raise invalid_param(
            "default_aggregation", "Missing required param: default_aggregation.", "parameter_missing"
        )
    mapping = p.sub("customer_mapping", ("event_payload_key", "type"))
    values = p.sub("value_settings", ("event_payload_key",))
    now = emu.now()
    meter: JSON = {
        "id": emu.ids.new("mtr"),
        "object": "billing.meter",
        "created": now,
        "customer_mapping": {
            "event_payload_key": (mapping.string("event_payload_key") if mapping else None)
            or "stripe_customer_id",
            "type": "by_id",
        },
        "default_aggregation": {"formula": agg.choice("formula", ("sum", "count", "last"), "sum")},
        "display_name": p.req_string("display_name"),
        "event_name": event_name,
        "event_time_window": p.choice("event_time_window", ("day", "hour")),
        "livemode": False,
        "status": "active",
        "status_transitions": {"deactivated_at": None},
        "updated": now,
        "value_settings": {
            "event_payload_key": (values.string("event_payload_key") if values else None) or "value"
        },
    }
    emu.store.add(meter)
    emu.emit("billing.meter.created", meter)
    return emu.render(meter)


def update_meter(emu: Emulator, call: ApiCall) -> JSON:
    meter = emu.store.get("billing.meter", call.arg("id"))
    p = call.params(("display_name",))
    before = emu.render(meter)
    if "display_name" in p:
        meter["display_name"] = p.req_string("display_name")
        meter["updated"] = emu.now()
    emu.emit_update("billing.meter.updated", meter, before)
    return emu.render(meter)


def _set_status(emu: Emulator, call: ApiCall, status: str) -> JSON:
    meter = emu.store.get("billing.meter", call.arg("id"))
    call.params(())
    if meter["status"] == status:
        raise StripeAPIError(400, f"The meter is already {status}.")
    meter["status"] = status
    meter["status_transitions"]["deactivated_at"] = emu.now() if status == "inactive" else None
    meter["updated"] = emu.now()
    emu.emit("billing.meter.deactivated" if status == "inactive" else "billing.meter.reactivated", meter)
    return emu.render(meter)


def deactivate(emu: Emulator, call: ApiCall) -> JSON:
    return _set_status(emu, call, "inactive")


def reactivate(emu: Emulator, call: ApiCall) -> JSON:
    return _set_status(emu, call, "active")


def list_meters(emu: Emulator, call: ApiCall) -> JSON:
    p = call.params((*LIST_PARAMS, "status"))
    items = emu.store.newest_first("billing.meter")
    status = p.choice("status", ("active", "inactive"))
    if status is not None:
        items = [m for m in items if m["status"] == status]
    return paginate(items, p, "/v1/billing/meters", emu.render)


def _active_meter(emu: Emulator, event_name: str) -> JSON:
    for meter in emu.store.all("billing.meter"):
        if meter["event_name"] == event_name and meter["status"] == "active":
            return meter
    raise invalid_param(
        "event_name", f"No active meter found for event_name '{event_name}'.", "resource_missing"
    )


def create_meter_event(emu: Emulator, call: ApiCall) -> JSON:
    p = call.params(("event_name", "payload", "identifier", "timestamp"))
    event_name = p.req_string("event_name")
    meter = _active_meter(emu, event_name)
    payload = p.sub("payload")
    if payload is None:
        raise invalid_param("payload", "Missing required param: payload.", "parameter_missing")
    cust_key = meter["customer_mapping"]["event_payload_key"]
    value_key = meter["value_settings"]["event_payload_key"]
    customer = payload.string(cust_key)
    if customer is None:
        raise invalid_param(
            f"payload[{cust_key}]", f"Missing required param: payload[{cust_key}].", "parameter_missing"
        )
    emu.store.get("customer", customer, f"payload[{cust_key}]")
    if meter["default_aggregation"]["formula"] != "count":
        try:
            float(payload.req_string(value_key))
        except ValueError:
            raise invalid_param(f"payload[{value_key}]", "The value must be a number.") from None
    now = emu.now()
    ts = p.integer("timestamp", now)
    assert ts is not None
    if ts < now - MAX_PAST or ts > now + MAX_FUTURE:
        raise invalid_param(
            "timestamp", "Timestamp must be within the past 35 days or up to 5 minutes in the future."
        )
    identifier = p.string("identifier") or emu.ids.new("mev", 20)
    for previous in emu.meter_events:
        if previous["identifier"] == identifier and now - previous["created"] < DEDUPE_WINDOW:
            raise StripeAPIError(
                400,
                f"A meter event with identifier '{identifier}' already exists.",
                code="resource_already_exists",
                param="identifier",
            )
    event: JSON = {
        "object": "billing.meter_event",
        "created": now,
        "event_name": event_name,
        "identifier": identifier,
        "livemode": False,
        "payload": {str(k): str(v) for k, v in payload.data.items()},
        "timestamp": ts,
        "_canceled": False,
        "_seq": len(emu.meter_events),
    }
    emu.meter_events.append(event)
    return public(event)


def create_adjustment(emu: Emulator, call: ApiCall) -> JSON:
    p = call.params(("event_name", "type", "cancel"))
    event_name = p.req_string("event_name")
    kind = p.choice("type", ("cancel",), "cancel")
    cancel = p.sub("cancel", ("identifier",))
    identifier = cancel.string("identifier") if cancel else None
    if identifier is None:
        raise invalid_param(
            "cancel[identifier]", "Missing required param: cancel[identifier].", "parameter_missing"
        )
    matches = [e for e in emu.meter_events if e["identifier"] == identifier and e["event_name"] == event_name]
    if not matches:
        raise invalid_param(
            "cancel[identifier]", f"No meter event found with identifier '{identifier}'.", "resource_missing"
        )
    now = emu.now()
    matches = [e for e in matches if now - e["created"] < CANCEL_WINDOW]
    if not matches:
        # Stripe: "You can only cancel events within 24 hours of Stripe receiving them."
        raise invalid_param(
            "cancel[identifier]",
            f"The meter event '{identifier}' was received over 24 hours ago: it can no longer be canceled.",
        )
    for event in matches:
        event["_canceled"] = True
    return {
        "object": "billing.meter_event_adjustment",
        "cancel": {"identifier": identifier},
        "event_name": event_name,
        "livemode": False,
        "status": "complete",
        "type": kind,
    }


def event_summaries(emu: Emulator, call: ApiCall) -> JSON:
    meter = emu.store.get("billing.meter", call.arg("id"))
    p = call.params((*LIST_PARAMS, "customer", "start_time", "end_time", "value_grouping_window"))
    customer = p.req_string("customer")
    start, end = p.integer("start_time", required=True), p.integer("end_time", required=True)
    assert start is not None and end is not None
    if end <= start:
        raise invalid_param("end_time", "end_time must be after start_time.")
    window = p.choice("value_grouping_window", ("hour", "day"))
    step = {"hour": 3600, "day": DAY}.get(window or "", end - start)
    windows = [(t, min(t + step, end)) for t in range(start, end, step)]
    summaries = []
    for lo, hi in windows:
        digest = hashlib.sha1(f"{meter['id']}:{customer}:{lo}:{hi}".encode(), usedforsecurity=False)
        summaries.append(
            {
                "id": f"mtrusg_{digest.hexdigest()[:24]}",
                "object": "billing.meter_event_summary",
                "aggregated_value": metering.aggregate(
                    meter, metering.events_for(emu, meter, customer, lo, hi)
                ),
                "end_time": hi,
                "livemode": False,
                "meter": meter["id"],
                "start_time": lo,
            }
        )
    url = f"/v1/billing/meters/{meter['id']}/event_summaries"
    if not summaries:
        return list_object([], url)
    return paginate(summaries, p, url, lambda s: s)


ROUTES = [
    ApiRoute("POST", "/v1/billing/meters", create_meter),
    ApiRoute("GET", "/v1/billing/meters", list_meters),
    ApiRoute("GET", "/v1/billing/meters/{id}", retrieve("billing.meter")),
    ApiRoute("POST", "/v1/billing/meters/{id}", update_meter),
    ApiRoute("POST", "/v1/billing/meters/{id}/deactivate", deactivate),
    ApiRoute("POST", "/v1/billing/meters/{id}/reactivate", reactivate),
    ApiRoute("GET", "/v1/billing/meters/{id}/event_summaries", event_summaries),
    ApiRoute("POST", "/v1/billing/meter_events", create_meter_event),
    ApiRoute("POST", "/v1/billing/meter_event_adjustments", create_adjustment),
]
