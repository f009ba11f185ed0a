"""Emulator objects have Stripe's shapes: fixtures3.json keys/types, and the SDK parses them."""

from __future__ import annotations

import re
from typing import Any

import pytest
import stripe
from starlette.testclient import TestClient

from .conftest import DAY, START
from .helpers import advance, get, post
from .shapes import fixtures, missing_keys, shape_errors

#: Keys the emulator emits that fixtures3.json lacks, each declared by the SDK's types.
SDK_ONLY = {
    "$.lines.data[0].pricing.price_details",  # InvoiceLineItem.Pricing.price_details
    "$.pricing.price_details",  # InvoiceLineItem/InvoiceItem.Pricing.price_details
    "$.parent.subscription_details.subscription_item",  # InvoiceItem.Parent...
    "$.secret",  # WebhookEndpoint.secret (shown on creation only)
}


def _objects(api: TestClient) -> dict[str, Any]:
    product = post(api, "/v1/products", {"name": "Pro"})
    meter = post(
        api,
        "/v1/billing/meters",
        {"display_name": "Calls", "event_name": "api_call", "default_aggregation[formula]": "sum"},
    )
    price = post(
        api,
        "/v1/prices",
        {"product": product["id"], "unit_amount": 1000, "currency": "usd", "recurring[interval]": "month"},
    )
    metered = post(
        api,
        "/v1/prices",
        {
            "product": product["id"],
            "unit_amount": 5,
            "currency": "usd",
            "recurring[interval]": "month",
            "recurring[usage_type]": "metered",
            "recurring[meter]": meter["id"],
        },
    )
    customer = post(api, "/v1/customers", {"email": "a@example.com"})
    sub = post(
        api,
        "/v1/subscriptions",
        {"customer": customer["id"], "items[0][price]": price["id"], "items[1][price]": metered["id"]},
    )
    advance(api, days=10)
    sub = post(
        api,
        f"/v1/subscriptions/{sub['id']}",
        {"items[0][id]": sub["items"]["data"][0]["id"], "items[0][quantity]": 3},
    )
    invoice = get(api, f"/v1/invoices/{sub['latest_invoice']}")
    preview = post(api, "/v1/invoices/create_preview", {"subscription": sub["id"]})
    schedule = post(api, "/v1/subscription_schedules", {"from_subscription": sub["id"]})
    event = post(
        api,
        "/v1/billing/meter_events",
        {"event_name": "api_call", "payload[stripe_customer_id]": customer["id"], "payload[value]": "3"},
    )
    adjustment = post(
        api,
        "/v1/billing/meter_event_adjustments",
        {"event_name": "api_call", "cancel[identifier]": event["identifier"]},
    )
    summary = get(
        api,
        f"/v1/billing/meters/{meter['id']}/event_summaries",
        {"customer": customer["id"], "start_time": START, "end_time": START + 40 * DAY},
    )
    endpoint = post(
        api, "/v1/webhook_endpoints", {"url": "http://127.0.0.1:9/hook", "enabled_events[0]": "*"}
    )
    clock = post(api, "/v1/test_helpers/test_clocks", {"frozen_time": START + 10 * DAY})
    return {
        "product": product,
        "price": price,
        "customer": customer,
        "subscription": sub,
        "subscription_item": sub["items"]["data"][0],
        "invoice": invoice,
        "line_item": invoice["lines"]["data"][0],
        "invoice_preview": preview,
        "proration_line": preview["lines"]["data"][-1],
        "subscription_schedule": schedule,
        "billing.meter": meter,
        "billing.meter_event": event,
        "billing.meter_event_adjustment": adjustment,
        "billing.meter_event_summary": summary["data"][0],
        "webhook_endpoint": endpoint,
        "test_helpers.test_clock": clock,
        "invoiceitem": get(api, "/v1/invoiceitems")["data"][0],
        "event": get(api, "/v1/events")["data"][0],
    }


@pytest.fixture
def objects(api: TestClient) -> dict[str, Any]:
    return _objects(api)


KINDS = [
    "product",
    "price",
    "customer",
    "subscription",
    "subscription_item",
    "invoice",
    "line_item",
    "subscription_schedule",
    "billing.meter",
    "billing.meter_event",
    "billing.meter_event_adjustment",
    "billing.meter_event_summary",
    "webhook_endpoint",
    "test_helpers.test_clock",
    "invoiceitem",
    "event",
]


#: Objects compared with the fixture of another kind.
FIXTURE_OF = {"invoice_preview": "invoice", "proration_line": "line_item"}


@pytest.mark.parametrize("kind", [*KINDS, *FIXTURE_OF])
def test_shape_matches_stripe_fixture(objects: dict[str, Any], kind: str) -> None:
    obj = objects[kind]
    fixture = fixtures()[FIXTURE_OF.get(kind, kind)]
    if kind == "event":  # data.object is compared with the fixture of its own type
        fixture = {**fixture, "data": {"object": fixtures()[obj["data"]["object"]["object"]]}}
    errors = [
        e for e in shape_errors(obj, fixture) if re.sub(r"\[\d+\]", "[0]", e.split(":")[0]) not in SDK_ONLY
    ]
    assert errors == []
    assert missing_keys(obj, fixture) == set()
    if "object" in fixture:
        assert obj["object"] == fixture["object"]
    if "livemode" in obj:
        assert obj["livemode"] is False


def test_ids_use_stripe_prefixes(objects: dict[str, Any]) -> None:
    prefixes = {
        "product": "prod_",
        "price": "price_",
        "customer": "cus_",
        "subscription": "sub_",
        "subscription_item": "si_",
        "invoice": "in_",
        "line_item": "il_",
        "subscription_schedule": "sub_sched_",
        "billing.meter": "mtr_",
        "webhook_endpoint": "we_",
        "test_helpers.test_clock": "clock_",
        "invoiceitem": "ii_",
        "event": "evt_",
        "billing.meter_event_summary": "mtrusg_",
    }
    for kind, prefix in prefixes.items():
        assert objects[kind]["id"].startswith(prefix), kind
    assert objects["webhook_endpoint"]["secret"].startswith("whsec_")


def test_subscription_items_carry_periods_and_prices(objects: dict[str, Any]) -> None:
    sub = objects["subscription"]
    assert "current_period_end" not in sub  # moved onto items in 2025-03-31.basil
    for item in sub["items"]["data"]:
        assert item["current_period_start"] == START
        assert item["current_period_end"] == START + 31 * DAY  # January has 31 days
        assert item["price"]["object"] == "price"
    assert sub["items"]["url"] == f"/v1/subscription_items?subscription={sub['id']}"


def test_sdk_parses_objects_into_typed_resources(stripe_client: stripe.StripeClient) -> None:
    c = stripe_client
    product = c.v1.products.create({"name": "Pro"})
    price = c.v1.prices.create(
        {
            "product": product.id,
            "unit_amount": 1200,
            "currency": "usd",
            "recurring": {"interval": "month"},
            "lookup_key": "pro",
        }
    )
    customer = c.v1.customers.create({"email": "sdk@example.com"})
    sub = c.v1.subscriptions.create({"customer": customer.id, "items": [{"price": price.id}]})
    assert isinstance(product, stripe.Product)
    assert isinstance(price, stripe.Price)
    assert price.recurring is not None and price.recurring.interval == "month"
    assert isinstance(sub, stripe.Subscription)
    item = sub["items"].data[0]
    assert isinstance(item, stripe.SubscriptionItem)
    assert isinstance(item.price, stripe.Price)
    assert item.current_period_end > item.current_period_start
    invoice = c.v1.invoices.retrieve(str(sub.latest_invoice))
    assert isinstance(invoice, stripe.Invoice)
    assert invoice.status == "paid"
    assert invoice.parent is not None
    assert invoice.parent.subscription_details is not None
    assert invoice.parent.subscription_details.subscription == sub.id
    events = c.v1.events.list({"limit": 3})
    assert all(isinstance(e, stripe.Event) for e in events.data)
    created = c.v1.events.list({"type": "customer.subscription.created"}).data[0]
    assert isinstance(created.data.object, stripe.Subscription)
    assert created.api_version == "2026-10-28.endive"
    assert c.v1.prices.list({"lookup_keys": ["pro"]}).data[0].id == price.id


def test_expand_latest_invoice_customer_and_nested_product(
    stripe_client: stripe.StripeClient,
) -> None:
    c = stripe_client
    product = c.v1.products.create({"name": "Pro"})
    price = c.v1.prices.create(
        {"product": product.id, "unit_amount": 500, "currency": "usd", "recurring": {"interval": "month"}}
    )
    customer = c.v1.customers.create({"email": "x@example.com"})
    sub = c.v1.subscriptions.create(
        {
            "customer": customer.id,
            "items": [{"price": price.id}],
            "expand": ["latest_invoice", "customer", "items.data.price.product"],
        }
    )
    assert isinstance(sub.latest_invoice, stripe.Invoice)
    assert isinstance(sub.customer, stripe.Customer)
    assert isinstance(sub["items"].data[0].price.product, stripe.Product)
    listed = c.v1.subscriptions.list({"expand": ["data.customer"]})
    assert isinstance(listed.data[0].customer, stripe.Customer)
    again = c.v1.subscriptions.retrieve(sub.id)
    assert again.customer == customer.id  # not expanded unless asked


def test_expand_rejects_unknown_paths(api: TestClient) -> None:
    cus = post(api, "/v1/customers", {"email": "e@example.com"})
    response = api.get("/v1/customers", params={"expand[]": "data.nope"})
    assert response.status_code == 400
    assert api.get(f"/v1/customers/{cus['id']}", params={"expand[]": "email"}).status_code == 400
    assert response.json()["error"]["param"] == "expand"
