"""Publishing a plan version with migration: migrated subscriptions get the new price in
Stripe, grandfathered ones are untouched, and the webhooks the push causes are echoes."""

from __future__ import annotations

import json

import pytest
from sqlmodel import Session, col, select

from syncd.models import OutboxMessage
from syncd.stripe_api import is_own_request
from syncd.stripe_push.verify import catalog_divergence
from tests.stripe_sync.harness import World

from .helpers import catalog, item_price, price_of, run, subscribe, version_of


def test_migration_swaps_prices_and_leaves_grandfathered(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog(world)
    run(world)
    v1 = price_of(world, 1)
    cus_a, sub_a = subscribe(world, "A", v1)
    cus_b, sub_b = subscribe(world, "B", v1)
    world.sync()
    assert world.base(cus_a) == world.base(cus_b) == "pro"
    grandfathered = world.company(cus_b).id

    catalog(world, pro_month=5900, migration="immediate", exclude=[grandfathered])
    assert version_of(world, cus_a) == 2 and version_of(world, cus_b) == 1

    dry = run(world, dry_run=True, proration_behavior="none")
    swaps = [op.line for op in dry.ops if op.action == "swap"]
    assert swaps == [f"swap       subscription {sub_a} (pro): v1 -> v2 price (new price), proration none"]
    result = run(world, proration_behavior="none")
    v2 = price_of(world, 2)
    assert [op.what for op in result.ops if op.action == "swap"] == [f"subscription {sub_a} (pro)"]
    assert item_price(world, sub_a) == v2
    assert item_price(world, sub_b) == v1  # grandfathered: untouched
    assert run(world).ops == []  # converged

    # The webhooks the push caused carry our idempotency-key prefix and are not mapped again:
    # the migrated company stays on v2 (mapping the echo as foreign would be harmless here,
    # but the inbound side must not fight the push).
    world.sync()
    own = [e for e in world.inbox() if e.event_type == "customer.subscription.updated"]
    assert own and all(is_own_request(json.loads(e.payload)) for e in own)
    assert version_of(world, cus_a) == 2 and version_of(world, cus_b) == 1

    # A foreign change (made in the Stripe dashboard) is still applied.
    world.client.v1.subscriptions.update(
        sub_b, {"metadata": {"note": "dashboard"}, "cancel_at_period_end": True}
    )
    world.sync()
    billing = world.company(cus_b).billing_base
    assert billing is not None and billing.access_until is not None  # cancel at period end mapped
    assert version_of(world, cus_a) == 2 and version_of(world, cus_b) == 1


def test_proration_behavior_is_validated(world: World) -> None:
    catalog(world)
    with pytest.raises(ValueError, match="proration_behavior"):
        run(world, proration_behavior="sometimes")


def test_migration_intent_survives_an_inbound_remap_before_the_push(world: World) -> None:
    catalog(world)
    run(world)
    cus_a, sub_a = subscribe(world, "A", price_of(world, 1))
    world.sync()
    catalog(world, pro_month=5900, migration="immediate")
    assert version_of(world, cus_a) == 2
    # Before the push (a crash, say), a foreign change to A's subscription arrives: the inbound
    # mapping re-derives A's version from its Stripe price, which is still v1's.
    item = world.client.v1.subscriptions.retrieve(sub_a)["items"].data[0].id
    world.client.v1.subscriptions.update(sub_a, {"items": [{"id": item, "quantity": 2}]})
    world.sync()
    assert version_of(world, cus_a) == 1
    assert any(
        f"swap       subscription {sub_a}" in line
        for line in catalog_divergence(world.engine, world.client, force=True)
    )

    run(world)
    assert item_price(world, sub_a) == price_of(world, 2)
    assert version_of(world, cus_a) == 2  # the migration stands
    with Session(world.engine) as session:
        rows = session.exec(select(OutboxMessage).where(col(OutboxMessage.adapter) == "stripe_push")).all()
    assert [r.status for r in rows] == ["delivered"]
    world.sync()  # the echo of the swap changes nothing
    assert version_of(world, cus_a) == 2
    assert run(world).ops == []
