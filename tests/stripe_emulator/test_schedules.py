"""Subscription schedules: phases advance with the clock."""

from __future__ import annotations

import httpx
import pytest
import stripe

from .conftest import DAY, START


@pytest.fixture
def setup(stripe_client: stripe.StripeClient) -> tuple[stripe.Customer, stripe.Price, stripe.Price]:
    c = stripe_client
    product = c.v1.products.create({"name": "Plan"})
    pro = c.v1.prices.create(
        {"product": product.id, "unit_amount": 3000, "currency": "usd", "recurring": {"interval": "month"}}
    )
    basic = c.v1.prices.create(
        {"product": product.id, "unit_amount": 1000, "currency": "usd", "recurring": {"interval": "month"}}
    )
    cus = c.v1.customers.create({"invoice_settings": {"default_payment_method": "pm_card_visa"}})
    return cus, pro, basic


def advance(control: httpx.Client, **body: int) -> list[str]:
    response = control.post("/clock/advance", json=body)
    response.raise_for_status()
    return [e["type"] for e in response.json()["events"]]


def test_downgrade_at_period_end_via_schedule(
    stripe_client: stripe.StripeClient,
    control: httpx.Client,
    setup: tuple[stripe.Customer, stripe.Price, stripe.Price],
) -> None:
    c = stripe_client
    cus, pro, basic = setup
    sub = c.v1.subscriptions.create({"customer": cus.id, "items": [{"price": pro.id}]})
    sched = c.v1.subscription_schedules.create({"from_subscription": sub.id})
    assert sched.status == "active" and sched.subscription == sub.id
    assert c.v1.subscriptions.retrieve(sub.id).schedule == sched.id
    phase = sched.phases[0]
    boundary = phase.end_date
    assert (phase.start_date, boundary) == (START, START + 31 * DAY)
    sched = c.v1.subscription_schedules.update(
        sched.id,
        {
            "phases": [
                {
                    "items": [{"price": pro.id, "quantity": 1}],
                    "start_date": phase.start_date,
                    "end_date": boundary,
                },
                {
                    "items": [{"price": basic.id, "quantity": 1}],
                    "duration": {"interval": "month", "interval_count": 1},
                },
            ],
            "end_behavior": "release",
        },
    )
    assert sched.phases[1].start_date == boundary
    advance(control, seconds=boundary - START - 1)
    assert c.v1.subscriptions.retrieve(sub.id)["items"].data[0].price.id == pro.id
    types = advance(control, seconds=1)
    assert "subscription_schedule.updated" in types and "customer.subscription.updated" in types
    sub = c.v1.subscriptions.retrieve(sub.id)
    assert [i.price.id for i in sub["items"].data] == [basic.id]
    renewal = c.v1.invoices.list({"subscription": sub.id}).data[0]
    assert renewal.amount_due == 1000  # the new phase's price, no proration at the boundary
    sched = c.v1.subscription_schedules.retrieve(sched.id)
    assert sched.current_phase is not None and sched.current_phase.start_date == boundary
    # the last phase ends: released, the subscription goes on unmanaged
    types = advance(control, days=28)
    assert "subscription_schedule.released" in types
    sched = c.v1.subscription_schedules.retrieve(sched.id)
    assert (sched.status, sched.released_subscription, sched.subscription) == ("released", sub.id, None)
    sub = c.v1.subscriptions.retrieve(sub.id)
    assert sub.schedule is None and sub.status == "active"


def test_schedule_with_future_start_creates_the_subscription(
    stripe_client: stripe.StripeClient,
    control: httpx.Client,
    setup: tuple[stripe.Customer, stripe.Price, stripe.Price],
) -> None:
    c = stripe_client
    cus, pro, basic = setup
    start = START + 5 * DAY
    sched = c.v1.subscription_schedules.create(
        {
            "customer": cus.id,
            "start_date": start,
            "end_behavior": "cancel",
            "phases": [
                {"items": [{"price": basic.id}], "iterations": 1},
                {"items": [{"price": pro.id}], "iterations": 1},
            ],
        }
    )
    assert sched.status == "not_started" and sched.subscription is None
    advance(control, days=5)
    sched = c.v1.subscription_schedules.retrieve(sched.id)
    assert sched.status == "active" and sched.subscription is not None
    sub = c.v1.subscriptions.retrieve(sched.subscription)
    assert sub.start_date == start and sub.schedule == sched.id
    assert sub["items"].data[0].price.id == basic.id
    advance(control, days=31)
    assert c.v1.subscriptions.retrieve(sub.id)["items"].data[0].price.id == pro.id
    types = advance(control, days=28)
    assert "subscription_schedule.completed" in types and "customer.subscription.deleted" in types
    assert c.v1.subscriptions.retrieve(sub.id).status == "canceled"
    assert c.v1.subscription_schedules.retrieve(sched.id).status == "completed"


def test_release_and_cancel(
    stripe_client: stripe.StripeClient, setup: tuple[stripe.Customer, stripe.Price, stripe.Price]
) -> None:
    c = stripe_client
    cus, pro, _ = setup
    sub = c.v1.subscriptions.create({"customer": cus.id, "items": [{"price": pro.id}]})
    sched = c.v1.subscription_schedules.release(
        c.v1.subscription_schedules.create({"from_subscription": sub.id}).id
    )
    assert sched.status == "released" and sched.released_at == START
    assert c.v1.subscriptions.retrieve(sub.id).schedule is None
    with pytest.raises(stripe.InvalidRequestError):
        c.v1.subscription_schedules.release(sched.id)
    sched2 = c.v1.subscription_schedules.create({"from_subscription": sub.id})
    canceled = c.v1.subscription_schedules.cancel(sched2.id)
    assert canceled.status == "canceled"
    assert c.v1.subscriptions.retrieve(sub.id).status == "canceled"
    types = [e.type for e in c.v1.events.list({"limit": 100}).data]
    for expected in (
        "subscription_schedule.created",
        "subscription_schedule.released",
        "subscription_schedule.canceled",
        "customer.subscription.deleted",
    ):
        assert expected in types


def test_from_subscription_forbids_other_params(
    stripe_client: stripe.StripeClient, setup: tuple[stripe.Customer, stripe.Price, stripe.Price]
) -> None:
    c = stripe_client
    cus, pro, _ = setup
    sub = c.v1.subscriptions.create({"customer": cus.id, "items": [{"price": pro.id}]})
    with pytest.raises(stripe.InvalidRequestError):
        c.v1.subscription_schedules.create({"from_subscription": sub.id, "end_behavior": "cancel"})
