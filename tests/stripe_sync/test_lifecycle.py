"""Subscription lifecycles on the emulator, delivered in order, shuffled and duplicated, or
failed-then-retried: the company's plans, add-ons, allocation and access must come out the same."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from .harness import World

DELIVERY = {
    "in_order": {},
    "shuffled_duplicated": {"webhook_reorder": True, "webhook_duplicate": 0.5, "seed": 3},
    "fail_then_retry": {"webhook_fail_attempts": 1, "webhook_reorder": True, "seed": 5},
}


def _items(world: World, sub_id: str) -> list[Any]:
    return list(world.client.v1.subscriptions.retrieve(sub_id)["items"]["data"])


@pytest.mark.parametrize("delivery", sorted(DELIVERY))
def test_subscribe_upgrade_addon_cancel_at_period_end_resubscribe(world: World, delivery: str) -> None:
    ids = world.catalog()
    world.faults(**DELIVERY[delivery])
    v1 = world.client.v1
    cus = world.customer()
    sub = v1.subscriptions.create({"customer": cus, "items": [{"price": ids["pro_price"]}]})
    world.sync()
    company = world.company(cus)
    assert (company.base, company.add_ons) == ("pro", [])
    assert company.billing_base is not None and company.billing_base.stripe_subscription_id == sub.id
    assert world.flag(cus, "reports") and not world.flag(cus, "analytics")

    # Upgrade to Enterprise with 5 seats bought in advance.
    item = _items(world, sub.id)[0]
    v1.subscriptions.update(
        sub.id, {"items": [{"id": item.id, "price": ids["enterprise_price"], "quantity": 5}]}
    )
    world.sync()
    company = world.company(cus)
    assert company.base == "enterprise"
    assert company.traits["seats_allocated"] == "5"

    # Add-on.
    v1.subscriptions.update(sub.id, {"items": [{"price": ids["analytics_price"]}]})
    world.sync()
    assert world.company(cus).add_ons == ["analytics"]
    assert world.flag(cus, "analytics")

    # Cancel at period end: access continues until the period ends.
    period_end = int(_items(world, sub.id)[0].current_period_end)
    v1.subscriptions.update(sub.id, {"cancel_at_period_end": True})
    world.sync()
    company = world.company(cus)
    assert (company.base, company.add_ons) == ("enterprise", ["analytics"])
    assert company.billing_base is not None
    assert company.billing_base.access_until == datetime.fromtimestamp(period_end, UTC)
    assert world.flag(cus, "reports")  # still within the paid period

    world.advance(days=32)
    world.sync()
    company = world.company(cus)
    assert (company.base, company.add_ons) == (None, [])  # the loader derives the fallback plan
    assert not world.flag(cus, "reports") and not world.flag(cus, "analytics")

    # Resubscribe.
    v1.subscriptions.create({"customer": cus, "items": [{"price": ids["pro_price"]}]})
    world.sync()
    assert world.company(cus).base == "pro"
    assert world.flag(cus, "reports")
    assert not [e for e in world.inbox() if e.status not in ("applied", "ignored")]
    if delivery == "shuffled_duplicated":
        assert world.flush()["pending"] == 0


def test_trial_then_conversion(world: World) -> None:
    ids = world.catalog()
    cus = world.customer()
    world.client.v1.subscriptions.create(
        {"customer": cus, "items": [{"price": ids["pro_price"]}], "trial_period_days": 14}
    )
    world.sync()
    row = world.company(cus).billing_base
    assert row is not None and row.trial_status == "active"
    assert row.trial_end == datetime.fromtimestamp(world.now + 14 * 86_400, UTC)

    world.advance(days=15)
    world.sync()
    row = world.company(cus).billing_base
    assert row is not None and row.trial_status == "converted"


def test_payment_failure_past_due_then_unpaid(world: World) -> None:
    ids = world.catalog()
    world.control.post("/settings", json={"dunning_final_action": "unpaid"}).raise_for_status()
    cus = world.customer()
    sub = world.client.v1.subscriptions.create({"customer": cus, "items": [{"price": ids["pro_price"]}]})
    world.sync()
    world.set_payment_method(cus, "pm_card_chargeCustomerFail")

    world.advance(days=32)  # the renewal payment fails
    world.sync()
    assert world.client.v1.subscriptions.retrieve(sub.id).status == "past_due"
    assert world.company(cus).base == "pro"  # past_due still grants (no grace limit set)
    assert world.flag(cus, "reports")

    world.advance(days=16)  # every retry fails
    world.sync()
    assert world.client.v1.subscriptions.retrieve(sub.id).status == "unpaid"
    assert world.company(cus).base is None
    assert not world.flag(cus, "reports")
    last = world.change_log("company.plan_changed")[-1].payload["plan_change"]
    assert last["previous_base_plan_id"] is not None and last["base_plan_id"] is None


def test_past_due_grace_expires_without_a_stripe_event(emulator: Any, sqlite_url: str, tmp_path: Any) -> None:
    world = World(emulator, sqlite_url, tmp_path, SYNCD_STRIPE_PAST_DUE_GRACE_DAYS="2")
    try:
        ids = world.catalog()
        cus = world.customer()
        world.client.v1.subscriptions.create({"customer": cus, "items": [{"price": ids["pro_price"]}]})
        world.sync()
        world.set_payment_method(cus, "pm_card_chargeCustomerFail")
        world.advance(days=31.5)
        world.sync()
        row = world.company(cus).billing_base
        assert row is not None and row.access_until is not None  # grace running
        before = len(world.change_log())

        world.advance(days=2)  # nothing happens in Stripe; the grace ends
        assert world.flush()["attempts"] == 0
        world.apply()
        assert world.company(cus).base is None
        assert len(world.change_log()) > before  # adapters hear about the expiry
    finally:
        world.close()


def test_metadata_linked_product_and_more_than_ten_items(world: World) -> None:
    ids = world.catalog()
    v1 = world.client.v1
    extra = []
    for n in range(10):  # ten prices of a product no plan maps
        product = v1.products.create({"name": f"Unmapped {n}"})
        price = v1.prices.create(
            {"product": product.id, "unit_amount": 100, "currency": "usd", "recurring": {"interval": "month"}}
        )
        extra.append({"price": price.id})
    cus = world.customer()
    items = [{"price": ids["team_price"]}, *extra, {"price": ids["analytics_price"]}]  # add-on is item 12
    world.client.v1.subscriptions.create({"customer": cus, "items": items})
    world.sync()
    company = world.company(cus)
    assert (company.base, company.add_ons) == ("team", ["analytics"])


def test_postgres_lifecycle_with_duplicates(pg_world: World) -> None:
    world = pg_world
    ids = world.catalog()
    world.faults(webhook_duplicate=1.0, webhook_reorder=True, seed=11)
    cus = world.customer()
    sub = world.client.v1.subscriptions.create({"customer": cus, "items": [{"price": ids["pro_price"]}]})
    world.sync()
    assert world.company(cus).base == "pro"
    world.client.v1.subscriptions.cancel(sub.id)
    world.sync()
    assert world.company(cus).base is None
    topics = [c.topic for c in world.change_log()]
    assert "entitlements.changed" in topics and "company.plan_changed" in topics
