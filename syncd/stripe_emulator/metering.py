"""Meter-event aggregation: the numbers behind event summaries and metered invoices.

A meter aggregates the events with its ``event_name`` per customer (the payload key
in ``customer_mapping``) with ``sum``, ``count`` or ``last`` over a time window.
Cancelled events (``/v1/billing/meter_event_adjustments``) are left out. Unlike
Stripe, aggregation is immediate rather than eventually consistent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .store import JSON

if TYPE_CHECKING:
    from .emulator import Emulator

__all__ = ["aggregate", "events_for", "usage"]


def _value(meter: JSON, event: JSON) -> float:
    key = meter["value_settings"]["event_payload_key"]
    try:
        return float(event["payload"].get(key, 0))
    except (TypeError, ValueError):
        return 0.0


def events_for(emu: Emulator, meter: JSON, customer: str, start: int, end: int) -> list[JSON]:
    key = meter["customer_mapping"]["event_payload_key"]
    return [
        e
        for e in emu.meter_events
        if e["event_name"] == meter["event_name"]
        and not e["_canceled"]
        and e["payload"].get(key) == customer
        and start <= e["timestamp"] < end
    ]


def aggregate(meter: JSON, events: list[JSON]) -> float:
    formula = meter["default_aggregation"]["formula"]
    if formula == "count":
        return float(len(events))
    if formula == "last":
        if not events:
            return 0.0
        return _value(meter, max(events, key=lambda e: (e["timestamp"], e["_seq"])))
    return sum(_value(meter, e) for e in events)


def usage(emu: Emulator, meter_id: str, customer: str, start: int, end: int) -> float:
    meter = emu.store.find(meter_id)
    if meter is None:
        return 0.0
    return aggregate(meter, events_for(emu, meter, customer, start, end))
