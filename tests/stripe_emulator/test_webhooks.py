"""Webhook delivery observed by a real local HTTP receiver."""

from __future__ import annotations

import time
from collections import Counter

import httpx
import pytest
import stripe

from syncd.stripe_emulator import BackgroundServer, EmulatorConfig, sign_payload

from .conftest import START, Receiver


def register(c: stripe.StripeClient, url: str, events: list[str] | None = None) -> str:
    endpoint = c.v1.webhook_endpoints.create({"url": url, "enabled_events": events or ["*"]})
    assert endpoint.secret is not None and endpoint.secret.startswith("whsec_")
    return endpoint.secret


def some_activity(c: stripe.StripeClient) -> None:
    product = c.v1.products.create({"name": "Pro"})
    price = c.v1.prices.create(
        {"product": product.id, "unit_amount": 900, "currency": "usd", "recurring": {"interval": "month"}}
    )
    cus = c.v1.customers.create({"email": "hook@example.com"})
    c.v1.subscriptions.create({"customer": cus.id, "items": [{"price": price.id}]})


def flush(control: httpx.Client) -> dict[str, int]:
    response = control.post("/webhooks/flush")
    response.raise_for_status()
    result = response.json()
    assert result["pending"] == 0
    return result


def created_order(c: stripe.StripeClient) -> list[str]:
    return [e.id for e in reversed(list(c.v1.events.list({"limit": 100}).auto_paging_iter()))]


def test_deliveries_are_signed_like_stripe(
    stripe_client: stripe.StripeClient, control: httpx.Client, receiver: Receiver
) -> None:
    c = stripe_client
    secret = register(c, receiver.url)
    some_activity(c)
    result = flush(control)
    assert result["delivered"] == len(receiver.received) > 0
    assert receiver.ids() == created_order(c)  # in order, once each, by default
    for delivery in receiver.received:
        assert delivery.content_type.startswith("application/json")
        event = stripe.Webhook.construct_event(delivery.body, delivery.signature, secret)
        assert isinstance(event, stripe.Event)
        assert c.construct_event(delivery.body, delivery.signature, secret).id == event.id
        t, v1 = delivery.signature.split(",")
        assert t.startswith("t=") and v1.startswith("v1=")
        assert abs(int(t[2:]) - time.time()) < 60  # wall-clock, not emulator time
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(
            receiver.received[0].body, receiver.received[0].signature, "whsec_wrong"
        )
    # once delivered, pending_webhooks drops to zero
    assert all(e.pending_webhooks == 0 for e in c.v1.events.list({"limit": 100}).data)


def test_sign_payload_matches_the_sdk() -> None:
    header = sign_payload('{"id": "evt_1", "object": "event"}', "whsec_x", 1_700_000_000)
    expected = stripe.WebhookSignature._compute_signature(
        '1700000000.{"id": "evt_1", "object": "event"}', "whsec_x"
    )
    assert header == f"t=1700000000,v1={expected}"


def test_enabled_events_filter_and_disabled_endpoints(
    stripe_client: stripe.StripeClient, control: httpx.Client, receiver: Receiver
) -> None:
    c = stripe_client
    register(c, receiver.url, ["customer.*", "invoice.paid"])
    muted = c.v1.webhook_endpoints.create({"url": receiver.url + "/muted", "enabled_events": ["*"]})
    c.v1.webhook_endpoints.update(muted.id, {"disabled": True})
    some_activity(c)
    flush(control)
    assert set(receiver.types()) == {"customer.created", "customer.subscription.created", "invoice.paid"}
    assert c.v1.webhook_endpoints.retrieve(muted.id).status == "disabled"
    assert c.v1.webhook_endpoints.delete(muted.id).deleted is True
    assert [e.id for e in c.v1.webhook_endpoints.list().data] != [muted.id]


def test_duplicate_deliveries(
    stripe_client: stripe.StripeClient, control: httpx.Client, receiver: Receiver
) -> None:
    control.post("/faults", json={"webhook_duplicate": 1.0, "seed": 7}).raise_for_status()
    register(stripe_client, receiver.url)
    some_activity(stripe_client)
    flush(control)
    counts = Counter(receiver.ids())
    assert set(counts.values()) == {2}
    assert len(counts) == len(created_order(stripe_client))


def test_reordered_delivery_is_deterministic_under_a_seed(
    stripe_client: stripe.StripeClient, control: httpx.Client, receiver: Receiver
) -> None:
    runs: list[list[str]] = []
    for _ in range(2):
        control.post("/reset").raise_for_status()
        receiver.received.clear()
        control.post("/faults", json={"webhook_reorder": True, "seed": 42}).raise_for_status()
        register(stripe_client, receiver.url)
        some_activity(stripe_client)
        flush(control)
        order = created_order(stripe_client)
        assert sorted(receiver.ids()) == sorted(order)
        assert receiver.ids() != order
        runs.append(receiver.types())
    assert runs[0] == runs[1]


def test_non_2xx_is_retried_with_the_same_event(
    stripe_client: stripe.StripeClient, control: httpx.Client, receiver: Receiver
) -> None:
    register(stripe_client, receiver.url, ["customer.created"])
    receiver.statuses = [500, 503]
    stripe_client.v1.customers.create({"email": "retry@example.com"})
    result = flush(control)
    assert (result["attempts"], result["delivered"]) == (3, 1)
    assert len(set(receiver.ids())) == 1 and len(receiver.ids()) == 3
    log = control.get("/webhooks/deliveries").json()["data"]
    assert [(d["attempt"], d["status"], d["ok"]) for d in log] == [
        (1, 500, False),
        (2, 503, False),
        (3, 200, True),
    ]
    event = stripe_client.v1.events.list({"type": "customer.created"}).data[0]
    assert event.pending_webhooks == 0


def test_fail_then_retry_switch(
    stripe_client: stripe.StripeClient, control: httpx.Client, receiver: Receiver
) -> None:
    control.post("/faults", json={"webhook_fail_attempts": 2}).raise_for_status()
    register(stripe_client, receiver.url, ["customer.created"])
    stripe_client.v1.customers.create({"email": "timeout@example.com"})
    assert stripe_client.v1.events.list({"delivery_success": False}).data[0].type == "customer.created"
    result = flush(control)
    assert (result["attempts"], result["delivered"]) == (3, 1)
    assert len(receiver.received) == 3 and len(set(receiver.ids())) == 1
    assert stripe_client.v1.events.list({"delivery_success": False}).data == []


def test_gives_up_after_max_attempts(
    stripe_client: stripe.StripeClient, control: httpx.Client, receiver: Receiver
) -> None:
    register(stripe_client, receiver.url, ["customer.created"])
    receiver.statuses = [500] * 10
    stripe_client.v1.customers.create({"email": "down@example.com"})
    result = flush(control)
    assert (result["attempts"], result["failed"]) == (4, 1)
    assert stripe_client.v1.events.list({"type": "customer.created"}).data[0].pending_webhooks == 1


def test_background_delivery_with_delay_and_configured_url(receiver: Receiver) -> None:
    config = EmulatorConfig(
        start_time=START,
        seed=3,
        webhook_url=receiver.url,
        webhook_secret="whsec_configured",
        webhook_backoff=0.05,
    )
    with BackgroundServer(config) as server:
        httpx.post(f"{server.url}/_emulator/faults", json={"webhook_delay": 0.3}).raise_for_status()
        client = stripe.StripeClient("sk_test_bg", base_addresses={"api": server.url})
        began = time.monotonic()
        client.v1.customers.create({"email": "bg@example.com"})
        deadline = time.monotonic() + 10
        while not receiver.received and time.monotonic() < deadline:
            time.sleep(0.02)
        assert receiver.types() == ["customer.created"]
        assert time.monotonic() - began >= 0.3
        delivery = receiver.received[0]
        stripe.Webhook.construct_event(delivery.body, delivery.signature, "whsec_configured")
        assert httpx.get(f"{server.url}/_emulator/webhooks/config").json()["secret"] == "whsec_configured"
