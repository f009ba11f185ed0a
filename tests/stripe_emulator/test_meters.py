"""Billing meters, meter events (identifier dedupe), adjustments and summaries."""

from __future__ import annotations

import pytest
import stripe

from syncd.stripe_emulator import BackgroundServer

from .conftest import DAY, START


@pytest.fixture
def meter(stripe_client: stripe.StripeClient) -> stripe.billing.Meter:
    return stripe_client.v1.billing.meters.create(
        {"display_name": "API calls", "event_name": "api_call", "default_aggregation": {"formula": "sum"}}
    )


def send(
    c: stripe.StripeClient,
    customer: str,
    value: str,
    identifier: str | None = None,
    timestamp: int | None = None,
) -> stripe.billing.MeterEvent:
    params: dict[str, object] = {
        "event_name": "api_call",
        "payload": {"stripe_customer_id": customer, "value": value},
    }
    if identifier is not None:
        params["identifier"] = identifier
    if timestamp is not None:
        params["timestamp"] = timestamp
    return c.v1.billing.meter_events.create(params)  # type: ignore[arg-type]


def total(c: stripe.StripeClient, meter: str, customer: str, **params: int | str) -> float:
    summaries = c.v1.billing.meters.event_summaries.list(
        meter, {"customer": customer, "start_time": START - DAY, "end_time": START + 2 * DAY, **params}
    )  # type: ignore[typeddict-item]
    return sum(s.aggregated_value for s in summaries.data)


def test_identifier_dedupes_and_adjustment_cancels(
    stripe_client: stripe.StripeClient, meter: stripe.billing.Meter
) -> None:
    c = stripe_client
    cus = c.v1.customers.create({})
    first = send(c, cus.id, "5", "evt-1")
    assert first.identifier == "evt-1" and first.timestamp == START
    with pytest.raises(stripe.InvalidRequestError) as err:
        send(c, cus.id, "5", "evt-1")
    assert err.value.code == "resource_already_exists"
    send(c, cus.id, "7", "evt-2")
    generated = send(c, cus.id, "1")
    assert generated.identifier
    assert total(c, meter.id, cus.id) == 13
    adjustment = c.v1.billing.meter_event_adjustments.create(
        {"event_name": "api_call", "type": "cancel", "cancel": {"identifier": "evt-2"}}
    )
    assert adjustment.status == "complete"
    assert total(c, meter.id, cus.id) == 6


def test_adjustment_cancels_only_within_24_hours_of_receipt(
    stripe_client: stripe.StripeClient, server: BackgroundServer, meter: stripe.billing.Meter
) -> None:
    c = stripe_client
    cus = c.v1.customers.create({})
    send(c, cus.id, "5", "evt-old")
    server.emulator.clock.set(START + DAY - 1)
    send(c, cus.id, "7", "evt-new")
    server.emulator.clock.set(START + DAY)  # evt-old was received exactly 24 h ago
    with pytest.raises(stripe.InvalidRequestError) as err:
        c.v1.billing.meter_event_adjustments.create(
            {"event_name": "api_call", "type": "cancel", "cancel": {"identifier": "evt-old"}}
        )
    assert err.value.http_status == 400 and "24 hours" in str(err.value)
    c.v1.billing.meter_event_adjustments.create(
        {"event_name": "api_call", "type": "cancel", "cancel": {"identifier": "evt-new"}}
    )
    assert total(c, meter.id, cus.id) == 5


def test_negative_values_net_in_the_sum(
    stripe_client: stripe.StripeClient, meter: stripe.billing.Meter
) -> None:
    """Stripe: incorrectly recorded usage can also be fixed by recording negative quantities."""
    c = stripe_client
    cus = c.v1.customers.create({})
    send(c, cus.id, "9")
    send(c, cus.id, "-4")
    assert total(c, meter.id, cus.id) == 5


def test_idempotency_key_replays_instead_of_duplicating(
    stripe_client: stripe.StripeClient, meter: stripe.billing.Meter
) -> None:
    c = stripe_client
    cus = c.v1.customers.create({})
    params = {
        "event_name": "api_call",
        "identifier": "same",
        "payload": {"stripe_customer_id": cus.id, "value": "4"},
    }
    a = c.v1.billing.meter_events.create(params, {"idempotency_key": "ik"})  # type: ignore[arg-type]
    b = c.v1.billing.meter_events.create(params, {"idempotency_key": "ik"})  # type: ignore[arg-type]
    assert a.identifier == b.identifier
    assert total(c, meter.id, cus.id) == 4


def test_summaries_group_by_window_and_customer(
    stripe_client: stripe.StripeClient, meter: stripe.billing.Meter
) -> None:
    c = stripe_client
    a, b = c.v1.customers.create({}), c.v1.customers.create({})
    send(c, a.id, "2", timestamp=START - 3600)
    send(c, a.id, "3", timestamp=START - 7200)
    send(c, b.id, "100")
    summaries = c.v1.billing.meters.event_summaries.list(
        meter.id,
        {
            "customer": a.id,
            "start_time": START - DAY,
            "end_time": START + DAY,
            "value_grouping_window": "day",
        },
    )
    assert [s.aggregated_value for s in summaries.data] == [5, 0]
    assert all(isinstance(s, stripe.billing.MeterEventSummary) for s in summaries.data)
    assert total(c, meter.id, b.id) == 100


def test_event_validation(stripe_client: stripe.StripeClient, meter: stripe.billing.Meter) -> None:
    c = stripe_client
    cus = c.v1.customers.create({})
    with pytest.raises(stripe.InvalidRequestError):
        send(c, cus.id, "1", timestamp=START - 36 * DAY)
    with pytest.raises(stripe.InvalidRequestError):
        send(c, cus.id, "lots")
    with pytest.raises(stripe.InvalidRequestError):
        c.v1.billing.meter_events.create(
            {"event_name": "unknown", "payload": {"stripe_customer_id": cus.id, "value": "1"}}
        )


def test_count_and_last_formulas_and_deactivation(stripe_client: stripe.StripeClient) -> None:
    c = stripe_client
    cus = c.v1.customers.create({})
    counter = c.v1.billing.meters.create(
        {"display_name": "Logins", "event_name": "login", "default_aggregation": {"formula": "count"}}
    )
    last = c.v1.billing.meters.create(
        {
            "display_name": "Seats",
            "event_name": "seats",
            "default_aggregation": {"formula": "last"},
            "value_settings": {"event_payload_key": "n"},
            "customer_mapping": {"event_payload_key": "cust", "type": "by_id"},
        }
    )
    for _ in range(3):
        c.v1.billing.meter_events.create({"event_name": "login", "payload": {"stripe_customer_id": cus.id}})
    for n, ts in (("4", START - 60), ("9", START - 30), ("6", START - 90)):
        c.v1.billing.meter_events.create(
            {"event_name": "seats", "timestamp": ts, "payload": {"cust": cus.id, "n": n}}
        )
    assert total(c, counter.id, cus.id) == 3
    assert total(c, last.id, cus.id) == 9
    deactivated = c.v1.billing.meters.deactivate(counter.id)
    assert deactivated.status == "inactive"
    assert [m.id for m in c.v1.billing.meters.list({"status": "active"}).data] == [last.id]
    with pytest.raises(stripe.InvalidRequestError):
        c.v1.billing.meter_events.create({"event_name": "login", "payload": {"stripe_customer_id": cus.id}})
    assert c.v1.billing.meters.reactivate(counter.id).status == "active"
    events = [e.type for e in c.v1.events.list({"type": "billing.meter.*"}).data]
    assert events.count("billing.meter.created") == 2 and "billing.meter.deactivated" in events
