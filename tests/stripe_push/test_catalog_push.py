"""Catalog push against the emulator: create, idempotent re-run, dry run, archive, link."""

from __future__ import annotations

from sqlmodel import Session, col, select

from syncd.db import session_scope
from syncd.models import Plan, PlanPrice
from syncd.services.companies import upsert_company
from syncd.services.company_plans import update_company_plans
from syncd.stripe_api import METADATA_ORIGIN_KEY
from syncd.stripe_push.catalog import plan_catalog
from tests.stripe_sync.harness import World

from .helpers import catalog, run, stripe_counts, versions


def test_dry_run_writes_nothing_then_push_creates_products_and_prices(world: World) -> None:
    catalog(world)
    dry = run(world, dry_run=True)
    assert sorted(dry.lines) == sorted(
        [
            "create     product boost: name='Boost pack'",
            "create     product pro: name='Pro'",
            "create     price boost v1 one_time usd: 900 usd",
            "create     price pro v1 month usd: 4900 usd",
            "create     price pro v1 year usd: 49000 usd",
        ]
    )
    assert stripe_counts(world) == {"products": 0, "prices": 0, "active_prices": 0}

    result = run(world)
    assert result.applied == 5
    assert stripe_counts(world) == {"products": 2, "prices": 3, "active_prices": 3}
    products = {p["metadata"]["syncd_plan"]: p for p in world.emu.store.all("product")}
    assert set(products) == {"pro", "boost"}  # "free" has no price: nothing to bill
    for price in world.emu.store.all("price"):
        assert price["metadata"][METADATA_ORIGIN_KEY] == "syncd"
        assert price["lookup_key"].startswith("syncd:")
    one_time = next(p for p in world.emu.store.all("price") if p["metadata"]["syncd_plan"] == "boost")
    assert one_time["type"] == "one_time" and one_time["unit_amount"] == 900
    with Session(world.engine) as session:
        assert all(p.stripe_price_id for p in session.exec(select(PlanPrice)).all())
        pro = session.exec(select(Plan).where(col(Plan.key) == "pro")).one()
        assert pro.stripe_product_id == products["pro"]["id"]

    # Second run: nothing planned, nothing written.
    requests_before = len(world.emu.store.all("product")) + len(world.emu.store.all("price"))
    again = run(world)
    assert again.ops == [] and again.applied == 0
    assert len(world.emu.store.all("product")) + len(world.emu.store.all("price")) == requests_before


def test_changed_price_archives_old_version_and_deactivates_its_prices(world: World) -> None:
    catalog(world)
    run(world)
    catalog(world, pro_month=5900)  # no company on v1: updated in place -> new amount, same version
    result = run(world)
    assert sorted(op.action for op in result.ops) == ["create", "deactivate"]
    prices = [p for p in world.emu.store.all("price") if p["metadata"]["syncd_plan"] == "pro"]
    month = [p for p in prices if (p["recurring"] or {}).get("interval") == "month"]
    assert sorted((p["unit_amount"], p["active"]) for p in month) == [(4900, False), (5900, True)]
    new = next(p for p in month if p["active"])
    assert new["lookup_key"] == "syncd:pro:v1:month:usd"  # transferred from the old price
    assert run(world).ops == []


def test_crash_half_way_resumes_without_duplicates(world: World) -> None:
    catalog(world)
    with Session(world.engine) as session:
        ops = plan_catalog(session, world.client)
    # Crash 1: Stripe created the product, syncd died before linking it locally.
    with Session(world.engine) as session:
        ops[0].run(world.client, session)
        session.rollback()
    with Session(world.engine) as session:
        ops = plan_catalog(session, world.client)
    assert ops[0].action == "link"  # found by metadata, not created again
    with Session(world.engine) as session:
        ops[0].run(world.client, session)
        session.commit()
    # Crash 2: a price created in Stripe, its link lost.
    price_op = next(op for op in ops if op.what.startswith("price") and op.action == "create")
    with Session(world.engine) as session:
        price_op.run(world.client, session)
        session.rollback()
    assert stripe_counts(world)["products"] == 1
    result = run(world)
    assert stripe_counts(world) == {"products": 2, "prices": 3, "active_prices": 3}
    assert any(op.action == "link" for op in result.ops)
    assert run(world).ops == []


def test_existing_stripe_catalog_is_linked_not_duplicated(world: World) -> None:
    product = world.client.v1.products.create({"name": "Pro", "metadata": {"syncd_plan": "pro"}})
    world.client.v1.prices.create(
        {
            "product": product.id,
            "currency": "usd",
            "unit_amount": 4900,
            "recurring": {"interval": "month"},
            "lookup_key": "syncd:pro:v1:month:usd",
        }
    )
    catalog(world)
    result = run(world)
    assert stripe_counts(world)["products"] == 2  # pro linked, boost created
    assert stripe_counts(world)["prices"] == 3  # pro month linked, pro year + boost created
    assert {op.action for op in result.ops if op.what == "product pro"} == {"link", "update"}
    assert run(world).ops == []


def test_archived_version_prices_deactivated(world: World) -> None:
    catalog(world)
    run(world)
    # A company on v1 makes the price change a new version (v1 archived).
    with session_scope(world.engine) as session:
        company, _ = upsert_company(session, keys={"account": "acme"}, name="Acme")
        pro = session.exec(select(Plan).where(col(Plan.key) == "pro")).one()
        update_company_plans(session, company.id, base_plan_id=pro.id, add_on_ids=[])
    catalog(world, pro_month=5900)
    assert versions(world, "pro") == {1: "archived", 2: "published"}
    result = run(world)
    assert sorted(op.action for op in result.ops) == ["create", "create", "deactivate", "deactivate"]
    v1 = [
        p
        for p in world.emu.store.all("price")
        if p["metadata"].get("syncd_plan_version") == "1" and p["metadata"]["syncd_plan"] == "pro"
    ]
    assert v1 and not any(p["active"] for p in v1)
    assert run(world).ops == []


def test_hand_made_prices_without_lookup_keys_are_linked(world: World) -> None:
    ids = world.catalog()  # products and monthly prices made in Stripe, linked by product only
    before = stripe_counts(world)
    result = run(world)
    assert stripe_counts(world)["prices"] == before["prices"]  # nothing duplicated
    links = {op.what: op.detail for op in result.ops if op.action == "link"}
    assert links["price pro v1 month usd"] == ids["pro_price"]
    assert links["price analytics v1 month usd"] == ids["analytics_price"]
    assert run(world).ops == []
