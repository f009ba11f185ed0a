"""syncd -> Stripe plan changes end to end on the emulator and its clock: upgrade with
proration, downgrade scheduled for the period end and applied exactly at the boundary (by the
webhook or the boundary job, once), cancelled by an upgrade, refused over limits and forced."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, col, select

from syncd.boundaries.apply import apply_downgrades
from syncd.db import session_scope
from syncd.exceptions import ConflictError
from syncd.models import AuditLog, CatalogSettingsRow, CompanyKey, Plan, StripeCustomer
from syncd.services.traits import set_traits
from syncd.stripe_api import is_own_request
from syncd.stripe_emulator import BackgroundServer
from syncd.stripe_sync.mapping import ts

from .billing_helpers import change, downgrades, link_prices, new_company, plan_changes
from .harness import World


@pytest.fixture(params=["sqlite", "postgres"])
def bworld(request: pytest.FixtureRequest, emulator: BackgroundServer, tmp_path: Path) -> Iterator[World]:
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")
    w = World(emulator, str(url), tmp_path)
    yield w
    w.close()


def _sub(world: World, sub_id: str) -> Any:
    return world.client.v1.subscriptions.retrieve(sub_id)


def _period(world: World, sub_id: str) -> tuple[int, int]:
    item = _sub(world, sub_id)["items"]["data"][0]
    return int(item["current_period_start"]), int(item["current_period_end"])


def _no_failed_events(world: World) -> None:
    assert not [(e.event_type, e.last_error) for e in world.inbox() if e.status not in ("applied", "ignored")]


def test_customer_subscribe_and_upgrade_mid_period_with_proration(bworld: World) -> None:
    world = bworld
    ids = world.catalog()
    link_prices(world, ids)
    company_id, customer = new_company(world)
    with session_scope(world.engine) as session:  # idempotent: the same customer again
        from syncd.billing.customers import ensure_customer

        assert ensure_customer(session, world.client, company_id) == customer
    cus = world.client.v1.customers.retrieve(customer)
    assert cus.metadata["syncd_origin"] == "syncd" and cus.metadata["syncd_company_id"] == company_id
    with Session(world.engine) as session:
        assert session.get(StripeCustomer, customer).company_id == company_id  # type: ignore[union-attr]
        key = session.exec(select(CompanyKey).where(col(CompanyKey.value) == customer)).one()
        assert (key.company_id, key.key) == (company_id, "stripe_customer_id")

    first = change(world, company_id, "pro")
    assert (first.kind, first.applied) == ("subscribe", True)
    assert world.company(customer).base == "pro"  # local follows Stripe's answer at once
    world.sync()
    assert world.company(customer).base == "pro"
    start, end = _period(world, str(first.subscription_id))

    world.advance(days=15)
    up = change(world, company_id, "enterprise", proration_behavior="always_invoice")
    assert (up.kind, up.applied, up.subscription_id) == ("upgrade", True, first.subscription_id)
    company = world.company(customer)
    assert company.base == "enterprise" and world.flag(customer, "reports")
    assert _period(world, str(up.subscription_id)) == (start, end)  # upgrades keep the period

    invoice = world.client.v1.invoices.list({"customer": customer, "limit": 1}).data[0]
    assert invoice.billing_reason == "subscription_update" and invoice.status == "paid"
    lines = invoice.lines.data
    details = [(line.parent.invoice_item_details or line.parent.subscription_item_details) for line in lines]
    prorations = sorted(int(line.amount) for line, d in zip(lines, details, strict=True) if d.proration)
    assert len(prorations) == 2 and prorations[0] < 0 < prorations[1]  # unused Pro back, Enterprise rest
    remaining = (end - world.now) / (end - start)
    assert sum(prorations) == pytest.approx((19900 - 4900) * remaining, abs=2)

    world.sync()  # the echoes of our own writes do not add plan changes
    assert world.company(customer).base == "enterprise"
    # initial free plan, free -> pro (subscribe), pro -> enterprise (upgrade): nothing from echoes
    assert [c.action for c in plan_changes(world, company_id)] == [
        "company_upsert",
        "billing_sync",
        "billing_sync",
    ]
    _no_failed_events(world)


@pytest.mark.parametrize("first", ["webhook", "boundary_job"])
def test_downgrade_scheduled_and_applied_exactly_at_the_boundary(bworld: World, first: str) -> None:
    world = bworld
    ids = world.catalog()
    link_prices(world, ids)
    company_id, customer = new_company(world)
    sub_id = str(change(world, company_id, "enterprise").subscription_id)
    world.sync()
    world.advance(days=10)
    _, end = _period(world, sub_id)

    down = change(world, company_id, "pro", timing="period_end")
    assert (down.kind, down.applied) == ("downgrade", False)
    assert down.scheduled is not None and down.scheduled["effective_after"] == ts(end)
    pending = downgrades(world, company_id)
    assert [(d.status, d.effective_after) for d in pending] == [("pending", ts(end))]
    sched = world.client.v1.subscription_schedules.retrieve(str(pending[0].stripe_schedule_id))
    assert [p.items[0].price for p in sched.phases] == [ids["enterprise_price"], ids["pro_price"]]
    with Session(world.engine) as session:  # visible on the company
        from syncd.api.views.companies import company_detail
        from syncd.services.companies import get_company

        detail = company_detail(session, get_company(session, company_id))
        assert detail["scheduled_downgrade"]["to_plan_id"] == pending[0].to_plan_id

    with pytest.raises(ConflictError) as refused:  # purchases wait while it is pending
        change(world, company_id, "enterprise", add_ons=["analytics"])
    assert refused.value.code == "scheduled_downgrade_pending"

    world.sync()
    world.control.post("/clock/advance", json={"to": end - 1}).raise_for_status()
    world.sync()
    assert apply_downgrades(world.engine, ts(end - 1)) == 0
    assert world.company(customer).base == "enterprise" and world.flag(customer, "reports")

    before = len(plan_changes(world, company_id))
    world.control.post("/clock/advance", json={"to": end}).raise_for_status()
    if first == "boundary_job":
        assert apply_downgrades(world.engine, ts(end)) == 1
        assert world.company(customer).base == "pro"
        with pytest.raises(ConflictError) as waiting:  # until Stripe's webhook fills the subscription in
            change(world, company_id, "enterprise")
        assert waiting.value.code == "billing_sync_pending"
        world.sync()
    else:
        world.sync()  # the phase change is Stripe's own: applied, not an echo
        assert world.company(customer).base == "pro"
        assert apply_downgrades(world.engine, ts(end)) == 0
    company = world.company(customer)
    assert company.base == "pro" and company.billing_base is not None
    assert company.billing_base.stripe_subscription_id == sub_id
    assert [d.status for d in downgrades(world, company_id)] == ["applied"]
    assert len(plan_changes(world, company_id)) == before + 1  # exactly once
    assert world.change_log("company.scheduled_downgrade")[-1].payload["status"] == "applied"
    _no_failed_events(world)
    # Echo suppression: every subscription/schedule change we asked for carries our key; the
    # phase change Stripe made on its own clock carries none (so it was applied, not skipped).
    events = [json.loads(e.payload) for e in world.inbox()]
    billing = [
        e for e in events if e["type"].startswith(("customer.subscription.", "subscription_schedule."))
    ]
    requested = [e for e in billing if (e.get("request") or {}).get("id")]
    assert requested and all(is_own_request(e) for e in requested)
    at_boundary = [e for e in billing if e["created"] >= end and e["type"] == "customer.subscription.updated"]
    assert at_boundary and not any(is_own_request(e) for e in at_boundary)


def test_scheduled_downgrade_cancelled_by_an_upgrade(world: World) -> None:
    ids = world.catalog()
    premium = world.client.v1.prices.create(
        {"product": ids["team"], "unit_amount": 29900, "currency": "usd", "recurring": {"interval": "month"}}
    )
    link_prices(world, ids, {"team": (premium.id, 29900)})
    company_id, customer = new_company(world)
    sub_id = str(change(world, company_id, "enterprise").subscription_id)
    world.advance(days=5)
    _, end = _period(world, sub_id)
    change(world, company_id, "pro", timing="period_end")
    (row,) = downgrades(world, company_id)

    up = change(world, company_id, "team", proration_behavior="create_prorations")
    assert (up.kind, up.applied) == ("upgrade", True)
    assert [d.status for d in downgrades(world, company_id)] == ["canceled"]
    assert world.client.v1.subscription_schedules.retrieve(str(row.stripe_schedule_id)).status == "released"
    world.sync()
    world.control.post("/clock/advance", json={"to": end + 60}).raise_for_status()
    world.sync()
    assert apply_downgrades(world.engine, ts(end + 60)) == 0
    assert world.company(customer).base == "team"
    assert _sub(world, sub_id)["items"]["data"][0]["price"]["id"] == premium.id

    # Back on enterprise with a new schedule; asking for the current plan again cancels it.
    _no_failed_events(world)


def test_downgrade_refused_over_limits_forced_by_an_admin(bworld: World) -> None:
    world = bworld
    ids = world.catalog()
    link_prices(world, ids)
    company_id, customer = new_company(world)
    sub_id = str(change(world, company_id, "enterprise").subscription_id)
    with session_scope(world.engine) as session:
        set_traits(session, "company", company_id, {"seats_used": 3})
    world.advance(days=3)

    with pytest.raises(ConflictError) as refused:
        change(world, company_id, "pro", timing="now")
    assert refused.value.code == "over_plan_limits"
    assert refused.value.details["over_limits"] == [{"feature_key": "seats", "usage": 3, "limit": 0}]
    assert world.company(customer).base == "enterprise"
    assert _sub(world, sub_id)["items"]["data"][0]["price"]["id"] == ids["enterprise_price"]

    with session_scope(world.engine) as session:  # "contact us to downgrade"
        settings = session.get(CatalogSettingsRow, 1)
        assert settings is not None
        settings.prevent_self_service_downgrade = True
        settings.self_service_downgrade_url = "https://example.com/contact"
    from syncd.billing.errors import ForbiddenError

    with pytest.raises(ForbiddenError) as contact:
        change(world, company_id, "pro", timing="now")
    assert contact.value.code == "self_service_downgrade_disabled"
    assert contact.value.details["contact_url"] == "https://example.com/contact"

    forced = change(world, company_id, "pro", timing="now", force=True)
    assert (forced.kind, forced.applied) == ("downgrade", True)
    assert forced.warnings == [{"feature_key": "seats", "usage": 3, "limit": 0}]
    assert world.company(customer).base == "pro"
    start, _ = _period(world, sub_id)
    assert start == world.now  # an immediate downgrade starts a new period
    with Session(world.engine) as session:
        audit = session.exec(select(AuditLog).where(col(AuditLog.action) == "company.downgrade_forced")).one()
    assert audit.entity_id == company_id and audit.actor_type == "cli"
    assert audit.note is not None and "over the new plan's limits" in audit.note
    world.sync()
    assert world.company(customer).base == "pro"
    _no_failed_events(world)


def test_declined_card_is_a_402_and_nothing_changes(world: World) -> None:
    import httpx

    from syncd.apikeys import create_key

    ids = world.catalog()
    link_prices(world, ids)
    company_id, customer = new_company(world)
    sub_id = str(change(world, company_id, "pro").subscription_id)
    world.sync()
    world.advance(days=10)
    world.set_payment_method(customer, "pm_card_chargeCustomerFail")
    with session_scope(world.engine) as session:
        _, secret = create_key(session, "secret")
    before = (len(plan_changes(world, company_id)), len(world.change_log()))

    response = httpx.post(
        f"{world.url}/companies/{company_id}/plan-change",
        json={"plan_id": "enterprise", "proration_behavior": "always_invoice"},
        headers={"X-Schematic-Api-Key": secret},
        timeout=30,
    )
    assert response.status_code == 402, response.text
    body = response.json()
    assert body["code"] == "card_declined"
    assert body["details"]["decline_code"] == "generic_decline"
    assert world.company(customer).base == "pro"
    assert _sub(world, sub_id)["items"]["data"][0]["price"]["id"] == ids["pro_price"]
    assert (len(plan_changes(world, company_id)), len(world.change_log())) == before

    # With a good card the same request goes through and the company shows the new plan.
    world.set_payment_method(customer, "pm_card_visa")
    response = httpx.post(
        f"{world.url}/companies/{company_id}/plan-change",
        json={"plan_id": "enterprise", "proration_behavior": "always_invoice"},
        headers={"X-Schematic-Api-Key": secret},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["change"]["kind"] == "upgrade" and data["company"]["plan"]["name"] == "Enterprise"


def test_half_way_failure_is_reported_and_repaired_by_reconcile(world: World) -> None:
    from syncd.billing.plan_change import ChangeRequest, change_plan
    from syncd.stripe_sync.reconcile import repair, verify

    ids = world.catalog()
    link_prices(world, ids)
    company_id, customer = new_company(world)
    change(world, company_id, "enterprise")
    world.sync()
    # Stripe accepts a downgrade schedule, then the local transaction is lost (crash, DB error).
    with Session(world.engine) as session:
        change_plan(session, world.client, company_id, ChangeRequest(plan="pro", timing="period_end"))
        session.rollback()
    world.sync()
    assert downgrades(world, company_id) == []
    report = verify(world.engine, world.client, now=ts(world.now))
    assert any("a syncd downgrade with no pending row" in line for line in report.lines), report.lines

    repair(world.engine, world.client, report, now=ts(world.now))
    assert [(d.status, d.to_plan_id is not None) for d in downgrades(world, company_id)] == [
        ("pending", True)
    ]
    assert verify(world.engine, world.client, now=ts(world.now)).clean

    # Released in the Dashboard: verify sees it at once, the inbound sync applies it.
    world.client.v1.subscription_schedules.release(str(downgrades(world, company_id)[0].stripe_schedule_id))
    report = verify(world.engine, world.client, now=ts(world.now))
    assert any("Stripe schedule" in line and "is released" in line for line in report.lines), report.lines
    world.sync()
    assert [d.status for d in downgrades(world, company_id)] == ["canceled"]
    assert verify(world.engine, world.client, now=ts(world.now)).clean

    # An immediate downgrade half way: Stripe has it, the local plan does not.
    with Session(world.engine) as session:
        change_plan(session, world.client, company_id, ChangeRequest(plan="pro", timing="now", force=True))
        session.rollback()
    world.sync()
    report = verify(world.engine, world.client, now=ts(world.now))
    assert any("billing plans differ" in line for line in report.lines), report.lines
    repair(world.engine, world.client, report, now=ts(world.now))
    assert world.company(customer).base == "pro"
    assert [d.status for d in downgrades(world, company_id)] == ["canceled"]
    assert verify(world.engine, world.client, now=ts(world.now)).clean


def test_schematic_company_plans_endpoint_and_cli_push_to_stripe(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import httpx

    from syncd.apikeys import create_key
    from syncd.cli import main

    ids = world.catalog()
    link_prices(world, ids)
    company_id, customer = new_company(world)
    with Session(world.engine) as session:
        plan_ids = {p.key: p.id for p in session.exec(select(Plan)).all()}
    with session_scope(world.engine) as session:
        _, secret = create_key(session, "secret")
    response = httpx.put(
        f"{world.url}/company-plans/{company_id}",
        json={"base_plan_id": plan_ids["pro"], "add_on_ids": [plan_ids["analytics"]]},
        headers={"X-Schematic-Api-Key": secret},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    company = world.company(customer)
    assert (company.base, company.add_ons) == ("pro", ["analytics"])
    assert company.billing_base is not None and company.billing_base.stripe_subscription_id
    sub = _sub(world, company.billing_base.stripe_subscription_id)
    assert sorted(i["price"]["id"] for i in sub["items"]["data"]) == sorted(
        [ids["pro_price"], ids["analytics_price"]]
    )

    # The CLI (an admin): schedule a downgrade, show it, cancel it.
    config = tmp_path / "cli.toml"
    assert world.server is not None
    config.write_text("")
    monkeypatch.setenv("SYNCD_DATABASE_URL", world.settings.database_url)
    monkeypatch.setenv("SYNCD_STRIPE_API_KEY", "sk_test_emulator")
    monkeypatch.setenv("SYNCD_STRIPE_API_BASE", world.server.url)
    monkeypatch.setenv("SYNCD_CATALOG_PATH", "")
    world.advance(days=3)
    args = ["--config", str(config), "companies"]
    assert main([*args, "change-plan", customer, "--plan", "pro", "--no-add-ons", "--at-period-end"]) == 0
    assert [d.status for d in downgrades(world, company_id)] == ["pending"]
    assert main([*args, "show", customer]) == 0
    assert main([*args, "change-plan", "no-such-company", "--plan", "pro"]) == 1
    assert main([*args, "cancel-downgrade", customer]) == 0
    assert [d.status for d in downgrades(world, company_id)] == ["canceled"]
