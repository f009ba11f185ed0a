"""Subscription lifecycle scenarios, driven through the real stripe SDK."""

from __future__ import annotations

import httpx
import pytest
import stripe

from .conftest import DAY, START

Client = stripe.StripeClient


@pytest.fixture
def prices(stripe_client: Client) -> dict[str, stripe.Price]:
    c = stripe_client
    product = c.v1.products.create({"name": "Pro"})
    addon = c.v1.products.create({"name": "Seats"})

    def price(prod: stripe.Product, amount: int, interval: str, key: str) -> stripe.Price:
        return c.v1.prices.create(
            {
                "product": prod.id,
                "unit_amount": amount,
                "currency": "usd",
                "recurring": {"interval": interval},
                "lookup_key": key,
            }
        )

    return {
        "basic": price(product, 1000, "month", "basic"),
        "pro": price(product, 3000, "month", "pro"),
        "yearly": price(product, 30000, "year", "pro_yearly"),
        "seat": price(addon, 500, "month", "seat"),
    }


def customer(c: Client, pm: str | None = "pm_card_visa") -> stripe.Customer:
    params: dict[str, object] = {"email": "sub@example.com"}
    if pm is not None:
        params["invoice_settings"] = {"default_payment_method": pm}
    return c.v1.customers.create(params)  # type: ignore[arg-type]


def advance(control: httpx.Client, **body: int) -> list[str]:
    response = control.post("/clock/advance", json=body)
    response.raise_for_status()
    return [e["type"] for e in response.json()["events"]]


def event_types(c: Client) -> list[str]:
    """Event types, oldest first."""
    return [e.type for e in reversed(list(c.v1.events.list({"limit": 100}).data))]


def test_subscribe_creates_paid_invoice_and_events(
    stripe_client: Client, prices: dict[str, stripe.Price]
) -> None:
    c = stripe_client
    cus = customer(c)
    sub = c.v1.subscriptions.create(
        {"customer": cus.id, "items": [{"price": prices["basic"].id, "quantity": 2}]}
    )
    assert sub.status == "active"
    assert sub.start_date == START
    invoice = c.v1.invoices.retrieve(str(sub.latest_invoice))
    assert (invoice.status, invoice.amount_due, invoice.amount_paid) == ("paid", 2000, 2000)
    assert invoice.billing_reason == "subscription_create"
    types = event_types(c)
    for expected in (
        "customer.subscription.created",
        "invoice.created",
        "invoice.finalized",
        "invoice.paid",
        "invoice.payment_succeeded",
    ):
        assert expected in types


def test_renewal_invoices_each_period(
    stripe_client: Client, control: httpx.Client, prices: dict[str, stripe.Price]
) -> None:
    c = stripe_client
    sub = c.v1.subscriptions.create({"customer": customer(c).id, "items": [{"price": prices["basic"].id}]})
    first_end = sub["items"].data[0].current_period_end
    types = advance(control, days=31)
    assert "invoice.paid" in types and "customer.subscription.updated" in types
    sub = c.v1.subscriptions.retrieve(sub.id)
    item = sub["items"].data[0]
    assert item.current_period_start == first_end
    assert item.current_period_end == first_end + 28 * DAY  # February 2026
    invoices = c.v1.invoices.list({"subscription": sub.id}).data
    assert [i.billing_reason for i in invoices] == ["subscription_cycle", "subscription_create"]
    assert invoices[0].period_start == START and invoices[0].period_end == first_end
    updated = c.v1.events.list({"type": "customer.subscription.updated"}).data[0]
    assert updated.data.previous_attributes is not None
    assert "items" in updated.data.previous_attributes.to_dict()


def test_upgrade_mid_period_prorates_and_invoices(
    stripe_client: Client, control: httpx.Client, prices: dict[str, stripe.Price]
) -> None:
    c = stripe_client
    sub = c.v1.subscriptions.create({"customer": customer(c).id, "items": [{"price": prices["basic"].id}]})
    period = sub["items"].data[0].current_period_end - START
    advance(control, seconds=period // 2)
    sub = c.v1.subscriptions.update(
        sub.id,
        {
            "items": [{"id": sub["items"].data[0].id, "price": prices["pro"].id}],
            "proration_behavior": "always_invoice",
        },
    )
    assert sub["items"].data[0].price.id == prices["pro"].id
    invoice = c.v1.invoices.retrieve(str(sub.latest_invoice))
    assert invoice.billing_reason == "subscription_update"
    amounts = sorted(line.amount for line in invoice.lines.data)
    assert amounts == [-500, 1500]  # half a period: credit 10.00/2, charge 30.00/2
    for line in invoice.lines.data:  # Stripe: prorations are subscription item lines
        assert line.parent is not None and line.parent.type == "subscription_item_details"
        details = line.parent.subscription_item_details
        assert details is not None and details.proration and details.invoice_item
        assert details.subscription_item == sub["items"].data[0].id
    assert invoice.amount_paid == 1000
    event = c.v1.events.list({"type": "customer.subscription.updated"}).data[0]
    previous = event.data.previous_attributes
    assert previous is not None
    assert previous["items"]["data"][0]["price"]["id"] == prices["basic"].id


def test_create_prorations_land_on_next_invoice(
    stripe_client: Client, control: httpx.Client, prices: dict[str, stripe.Price]
) -> None:
    c = stripe_client
    sub = c.v1.subscriptions.create({"customer": customer(c).id, "items": [{"price": prices["basic"].id}]})
    period = sub["items"].data[0].current_period_end - START
    advance(control, seconds=period // 2)
    sub = c.v1.subscriptions.update(sub.id, {"items": [{"id": sub["items"].data[0].id, "quantity": 3}]})
    pending = c.v1.invoice_items.list({"customer": sub.customer, "pending": True}).data
    assert sorted(ii.amount for ii in pending) == [-500, 1500]
    advance(control, days=20)
    invoice = c.v1.invoices.list({"subscription": sub.id}).data[0]
    assert invoice.billing_reason == "subscription_cycle"
    assert invoice.amount_due == 3000 + 1000  # 3 seats for the new period + net proration
    assert c.v1.invoice_items.list({"customer": sub.customer, "pending": True}).data == []


def test_preview_shows_pending_prorations_and_stores_nothing(
    stripe_client: Client, control: httpx.Client, prices: dict[str, stripe.Price]
) -> None:
    c = stripe_client
    sub = c.v1.subscriptions.create({"customer": customer(c).id, "items": [{"price": prices["basic"].id}]})
    period_end = sub["items"].data[0].current_period_end
    advance(control, seconds=(period_end - START) // 2)
    item = sub["items"].data[0].id
    c.v1.subscriptions.update(sub.id, {"items": [{"id": item, "price": prices["pro"].id}]})
    invoices = [i.id for i in c.v1.invoices.list({"subscription": sub.id}).data]
    preview = c.v1.invoices.create_preview({"subscription": sub.id})
    prorations = [
        line.amount
        for line in preview.lines.data
        if line.parent is not None
        and line.parent.subscription_item_details is not None
        and line.parent.subscription_item_details.proration
    ]
    assert sorted(prorations) == [-500, 1500]
    assert preview.amount_due == 3000 + 1000 and preview.status == "draft"
    assert str(preview.id).startswith("upcoming_in_") and preview.period_end == period_end
    assert all(str(line.id).startswith("il_tmp_") for line in preview.lines.data)
    assert [i.id for i in c.v1.invoices.list({"subscription": sub.id}).data] == invoices
    assert len(c.v1.invoice_items.list({"customer": sub.customer, "pending": True}).data) == 2
    advance(control, days=20)
    renewal = c.v1.invoices.list({"subscription": sub.id}).data[0]
    assert renewal.amount_due == preview.amount_due
    assert sorted(line.amount for line in renewal.lines.data) == sorted(
        line.amount for line in preview.lines.data
    )
    c.v1.subscriptions.update(sub.id, {"cancel_at_period_end": True})
    with pytest.raises(stripe.InvalidRequestError) as err:
        c.v1.invoices.create_preview({"customer": str(sub.customer)})
    assert err.value.code == "invoice_upcoming_none"


def test_add_on_item_and_removal(
    stripe_client: Client, control: httpx.Client, prices: dict[str, stripe.Price]
) -> None:
    c = stripe_client
    sub = c.v1.subscriptions.create({"customer": customer(c).id, "items": [{"price": prices["basic"].id}]})
    sub = c.v1.subscriptions.update(
        sub.id, {"items": [{"price": prices["seat"].id, "quantity": 4}], "proration_behavior": "none"}
    )
    assert sorted(i.price.id for i in sub["items"].data) == sorted([prices["basic"].id, prices["seat"].id])
    seat = next(i for i in sub["items"].data if i.price.id == prices["seat"].id)
    assert seat.quantity == 4
    advance(control, days=31)
    assert c.v1.invoices.list({"subscription": sub.id}).data[0].amount_due == 1000 + 2000
    deleted = c.v1.subscription_items.delete(seat.id, {"proration_behavior": "none"})
    assert deleted.deleted is True
    assert len(c.v1.subscriptions.retrieve(sub.id)["items"].data) == 1


def test_items_list_paginates_past_ten(stripe_client: Client) -> None:
    c = stripe_client
    product = c.v1.products.create({"name": "Many"})
    price_ids = [
        c.v1.prices.create(
            {
                "product": product.id,
                "unit_amount": 100 + n,
                "currency": "usd",
                "recurring": {"interval": "month"},
            }
        ).id
        for n in range(12)
    ]
    sub = c.v1.subscriptions.create({"customer": customer(c).id, "items": [{"price": p} for p in price_ids]})
    assert len(sub["items"].data) == 10
    assert sub["items"].has_more is True
    items = list(c.v1.subscription_items.list({"subscription": sub.id, "limit": 5}).auto_paging_iter())
    assert [i.price.id for i in items] == price_ids


def test_mixed_intervals_are_rejected(stripe_client: Client, prices: dict[str, stripe.Price]) -> None:
    with pytest.raises(stripe.InvalidRequestError) as err:
        stripe_client.v1.subscriptions.create(
            {
                "customer": customer(stripe_client).id,
                "items": [{"price": prices["basic"].id}, {"price": prices["yearly"].id}],
            }
        )
    assert err.value.http_status == 400


def test_trial_end_becomes_active(
    stripe_client: Client, control: httpx.Client, prices: dict[str, stripe.Price]
) -> None:
    c = stripe_client
    sub = c.v1.subscriptions.create(
        {"customer": customer(c).id, "items": [{"price": prices["basic"].id}], "trial_period_days": 14}
    )
    assert sub.status == "trialing"
    assert (sub.trial_start, sub.trial_end) == (START, START + 14 * DAY)
    assert sub["items"].data[0].current_period_end == START + 14 * DAY
    assert c.v1.invoices.retrieve(str(sub.latest_invoice)).amount_due == 0
    types = advance(control, days=11)
    assert types == ["customer.subscription.trial_will_end"]
    types = advance(control, days=3)
    assert "invoice.paid" in types
    sub = c.v1.subscriptions.retrieve(sub.id)
    assert sub.status == "active"
    assert sub.billing_cycle_anchor == START + 14 * DAY
    assert sub["items"].data[0].current_period_start == START + 14 * DAY
    event = c.v1.events.list({"type": "customer.subscription.updated"}).data[0]
    assert event.data.previous_attributes is not None
    assert event.data.previous_attributes["status"] == "trialing"


def test_trial_end_with_failing_card_goes_past_due(
    stripe_client: Client, control: httpx.Client, prices: dict[str, stripe.Price]
) -> None:
    c = stripe_client
    sub = c.v1.subscriptions.create(
        {
            "customer": customer(c, "pm_card_chargeCustomerFail").id,
            "items": [{"price": prices["basic"].id}],
            "trial_period_days": 7,
        }
    )
    assert sub.status == "trialing"
    types = advance(control, days=7)
    assert "invoice.payment_failed" in types
    assert c.v1.subscriptions.retrieve(sub.id).status == "past_due"


def test_failing_card_at_creation_is_incomplete_then_expires(
    stripe_client: Client, control: httpx.Client, prices: dict[str, stripe.Price]
) -> None:
    c = stripe_client
    sub = c.v1.subscriptions.create(
        {"customer": customer(c, "pm_card_visa_chargeDeclined").id, "items": [{"price": prices["basic"].id}]}
    )
    assert sub.status == "incomplete"
    invoice = c.v1.invoices.retrieve(str(sub.latest_invoice))
    assert (invoice.status, invoice.attempt_count) == ("open", 1)
    assert "invoice.payment_failed" in event_types(c)
    advance(control, seconds=23 * 3600)
    assert c.v1.subscriptions.retrieve(sub.id).status == "incomplete_expired"
    assert c.v1.invoices.retrieve(invoice.id).status == "void"


def test_error_if_incomplete_declines_with_402(
    stripe_client: Client, prices: dict[str, stripe.Price]
) -> None:
    with pytest.raises(stripe.CardError) as err:
        stripe_client.v1.subscriptions.create(
            {
                "customer": customer(stripe_client, "pm_card_chargeCustomerFail").id,
                "items": [{"price": prices["basic"].id}],
                "payment_behavior": "error_if_incomplete",
            }
        )
    assert err.value.http_status == 402 and err.value.code == "card_declined"
    assert stripe_client.v1.subscriptions.list({"status": "all"}).data == []


def test_payment_failure_dunning_to_unpaid(
    stripe_client: Client, control: httpx.Client, prices: dict[str, stripe.Price]
) -> None:
    c = stripe_client
    control.post(
        "/settings", json={"dunning_final_action": "unpaid", "dunning_retry_days": [3, 5]}
    ).raise_for_status()
    cus = customer(c)
    sub = c.v1.subscriptions.create({"customer": cus.id, "items": [{"price": prices["basic"].id}]})
    control.post(
        f"/customers/{cus.id}/payment_method", json={"payment_method": "pm_card_chargeCustomerFail"}
    ).raise_for_status()
    advance(control, days=31)
    sub = c.v1.subscriptions.retrieve(sub.id)
    assert sub.status == "past_due"
    invoice = c.v1.invoices.retrieve(str(sub.latest_invoice))
    assert invoice.attempt_count == 1 and invoice.next_payment_attempt == START + 34 * DAY
    assert c.v1.customers.retrieve(cus.id).delinquent is True
    advance(control, days=3)
    assert c.v1.invoices.retrieve(invoice.id).attempt_count == 2
    assert c.v1.subscriptions.retrieve(sub.id).status == "past_due"
    advance(control, days=5)
    sub = c.v1.subscriptions.retrieve(sub.id)
    assert sub.status == "unpaid"
    assert c.v1.invoices.retrieve(invoice.id).next_payment_attempt is None
    assert len(c.v1.events.list({"type": "invoice.payment_failed"}).data) == 3


def test_dunning_default_cancels(
    stripe_client: Client, control: httpx.Client, prices: dict[str, stripe.Price]
) -> None:
    c = stripe_client
    cus = customer(c)
    sub = c.v1.subscriptions.create({"customer": cus.id, "items": [{"price": prices["basic"].id}]})
    c.v1.customers.update(
        cus.id, {"invoice_settings": {"default_payment_method": "pm_card_chargeCustomerFail"}}
    )
    advance(control, days=31 + 3 + 5 + 7)
    sub = c.v1.subscriptions.retrieve(sub.id)
    assert sub.status == "canceled"
    assert sub.cancellation_details is not None
    assert sub.cancellation_details.reason == "payment_failed"
    assert c.v1.events.list({"type": "customer.subscription.deleted"}).data[0].data.object.id == sub.id


def test_past_due_recovers_when_card_is_fixed(
    stripe_client: Client, control: httpx.Client, prices: dict[str, stripe.Price]
) -> None:
    c = stripe_client
    cus = customer(c, "pm_card_chargeCustomerFail")
    sub = c.v1.subscriptions.create(
        {"customer": cus.id, "items": [{"price": prices["basic"].id}], "trial_period_days": 3}
    )
    advance(control, days=3)
    assert c.v1.subscriptions.retrieve(sub.id).status == "past_due"
    pm = c.v1.payment_methods.attach("pm_card_visa", {"customer": cus.id})
    c.v1.customers.update(cus.id, {"invoice_settings": {"default_payment_method": pm.id}})
    advance(control, days=3)  # the first retry succeeds
    assert c.v1.subscriptions.retrieve(sub.id).status == "active"


def test_pay_open_invoice_recovers_incomplete(stripe_client: Client, prices: dict[str, stripe.Price]) -> None:
    c = stripe_client
    cus = customer(c, "pm_card_chargeCustomerFail")
    sub = c.v1.subscriptions.create({"customer": cus.id, "items": [{"price": prices["basic"].id}]})
    with pytest.raises(stripe.CardError):
        c.v1.invoices.pay(str(sub.latest_invoice))
    invoice = c.v1.invoices.pay(str(sub.latest_invoice), {"payment_method": "pm_card_visa"})
    assert invoice.status == "paid"
    assert c.v1.subscriptions.retrieve(sub.id).status == "active"


def test_cancel_at_period_end_then_resubscribe(
    stripe_client: Client, control: httpx.Client, prices: dict[str, stripe.Price]
) -> None:
    c = stripe_client
    cus = customer(c)
    sub = c.v1.subscriptions.create({"customer": cus.id, "items": [{"price": prices["basic"].id}]})
    end = sub["items"].data[0].current_period_end
    sub = c.v1.subscriptions.update(sub.id, {"cancel_at_period_end": True})
    assert (sub.status, sub.cancel_at_period_end, sub.cancel_at, sub.canceled_at) == (
        "active",
        True,
        end,
        START,
    )
    advance(control, days=30)
    assert c.v1.subscriptions.retrieve(sub.id).status == "active"
    types = advance(control, days=1)
    assert types == ["customer.subscription.deleted"]
    sub = c.v1.subscriptions.retrieve(sub.id)
    assert (sub.status, sub.ended_at) == ("canceled", end)
    assert c.v1.invoices.list({"subscription": sub.id}).data[0].billing_reason == "subscription_create"
    assert c.v1.subscriptions.list({"customer": cus.id}).data == []
    again = c.v1.subscriptions.create({"customer": cus.id, "items": [{"price": prices["pro"].id}]})
    assert again.status == "active" and again.id != sub.id
    assert [s.id for s in c.v1.subscriptions.list({"customer": cus.id, "status": "all"}).data] == [
        again.id,
        sub.id,
    ]


def test_undo_cancel_at_period_end(
    stripe_client: Client, control: httpx.Client, prices: dict[str, stripe.Price]
) -> None:
    c = stripe_client
    sub = c.v1.subscriptions.create({"customer": customer(c).id, "items": [{"price": prices["basic"].id}]})
    c.v1.subscriptions.update(sub.id, {"cancel_at_period_end": True})
    sub = c.v1.subscriptions.update(sub.id, {"cancel_at_period_end": False})
    assert sub.cancel_at is None and sub.canceled_at is None
    advance(control, days=40)
    assert c.v1.subscriptions.retrieve(sub.id).status == "active"


def test_cancel_immediately_and_canceled_is_frozen(
    stripe_client: Client, prices: dict[str, stripe.Price]
) -> None:
    c = stripe_client
    sub = c.v1.subscriptions.create({"customer": customer(c).id, "items": [{"price": prices["basic"].id}]})
    sub = c.v1.subscriptions.cancel(sub.id)
    assert (sub.status, sub.canceled_at, sub.ended_at) == ("canceled", START, START)
    with pytest.raises(stripe.InvalidRequestError):
        c.v1.subscriptions.update(sub.id, {"items": [{"price": prices["pro"].id}]})
    assert c.v1.subscriptions.update(sub.id, {"metadata": {"why": "test"}}).metadata["why"] == "test"


def test_interval_change_resets_the_cycle(
    stripe_client: Client, control: httpx.Client, prices: dict[str, stripe.Price]
) -> None:
    c = stripe_client
    sub = c.v1.subscriptions.create({"customer": customer(c).id, "items": [{"price": prices["basic"].id}]})
    advance(control, days=10)
    sub = c.v1.subscriptions.update(
        sub.id, {"items": [{"id": sub["items"].data[0].id, "price": prices["yearly"].id}]}
    )
    item = sub["items"].data[0]
    assert item.current_period_start == START + 10 * DAY
    assert item.current_period_end == START + 10 * DAY + 365 * DAY
    invoice = c.v1.invoices.retrieve(str(sub.latest_invoice))
    assert invoice.billing_reason == "subscription_update"
    assert invoice.amount_due == 30000 - round(1000 * 21 / 31)


def test_metered_item_bills_usage_in_arrears(stripe_client: Client, control: httpx.Client) -> None:
    c = stripe_client
    meter = c.v1.billing.meters.create(
        {"display_name": "Calls", "event_name": "calls", "default_aggregation": {"formula": "sum"}}
    )
    product = c.v1.products.create({"name": "API"})
    price = c.v1.prices.create(
        {
            "product": product.id,
            "unit_amount": 2,
            "currency": "usd",
            "recurring": {"interval": "month", "usage_type": "metered", "meter": meter.id},
        }
    )
    cus = customer(c)
    sub = c.v1.subscriptions.create({"customer": cus.id, "items": [{"price": price.id}]})
    assert c.v1.invoices.retrieve(str(sub.latest_invoice)).amount_due == 0
    for n in range(3):
        c.v1.billing.meter_events.create(
            {
                "event_name": "calls",
                "identifier": f"u{n}",
                "payload": {"stripe_customer_id": cus.id, "value": "50"},
            }
        )
    advance(control, days=31)
    invoice = c.v1.invoices.list({"subscription": sub.id}).data[0]
    assert invoice.amount_due == 150 * 2
