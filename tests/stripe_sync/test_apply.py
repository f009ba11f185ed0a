"""Applying inbox events: API-version drift, stale and tied snapshots, echoes, poison events."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlmodel import Session, select

from syncd.models import CompanyKey, StripeSubscription
from syncd.stripe_emulator import BackgroundServer
from syncd.stripe_sync.apply import ApplyOptions, apply_pending
from syncd.stripe_sync.inbox import store_event
from syncd.stripe_sync.mapping import current_period, ts

from .harness import World

T0 = 1_767_300_000


def put(world: World, event: dict[str, Any]) -> None:
    with world.engine.begin() as conn:
        store_event(conn, json.dumps(event).encode(), event)


def sub_event(
    event_id: str,
    created: int,
    sub: dict[str, Any],
    *,
    etype: str = "customer.subscription.updated",
    api_version: str = "2026-10-28.endive",
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    return {
        "id": event_id,
        "object": "event",
        "type": etype,
        "api_version": api_version,
        "created": created,
        "livemode": False,
        "data": {"object": sub},
        "request": {"id": None, "idempotency_key": idempotency_key},
    }


def legacy_sub(sub_id: str, customer: str, product: str, status: str = "active") -> dict[str, Any]:
    """A subscription as rendered for API 2017-08-15: ``plan`` on items, periods on the subscription."""
    plan = {"id": "plan_legacy", "object": "plan", "product": product, "interval": "month", "amount": 4900}
    return {
        "id": sub_id,
        "object": "subscription",
        "customer": customer,
        "status": status,
        "created": T0 - 100,
        "current_period_start": T0,
        "current_period_end": T0 + 30 * 86_400,
        "cancel_at_period_end": False,
        "plan": plan,
        "quantity": 1,
        "items": {"object": "list", "data": [{"id": "si_1", "plan": plan, "quantity": 1}], "has_more": False},
    }


NO_REFETCH = ApplyOptions(refetch=frozenset())


def test_event_rendered_in_2017_08_15_maps_plan_and_period(world: World) -> None:
    ids = world.catalog()
    put(
        world,
        sub_event("evt_old", T0, legacy_sub("sub_old", "cus_old", ids["pro"]), api_version="2017-08-15"),
    )
    apply_pending(world.engine, None, options=NO_REFETCH, now=ts(T0))
    company = world.company("cus_old")
    assert company.base == "pro"
    with Session(world.engine) as session:
        assert current_period(session, company.id) == (ts(T0), ts(T0 + 30 * 86_400))


def test_out_of_order_snapshots_never_overwrite_newer_state(world: World) -> None:
    ids = world.catalog()
    canceled = legacy_sub("sub_1", "cus_1", ids["pro"], status="canceled")
    active = legacy_sub("sub_1", "cus_1", ids["pro"], status="active")
    put(world, sub_event("evt_new", T0 + 10, canceled))  # the newer event arrives first
    apply_pending(world.engine, None, options=NO_REFETCH, now=ts(T0))
    put(world, sub_event("evt_old", T0, active, etype="customer.subscription.created"))
    result = apply_pending(world.engine, None, options=NO_REFETCH, now=ts(T0))
    assert result.stale == 1
    assert world.company("cus_1").base == "free"  # the initial plan; never Pro
    with Session(world.engine) as session:
        row = session.get(StripeSubscription, "sub_1")
        assert row is not None and (row.status, row.source_id) == ("canceled", "evt_new")


def test_same_second_tie_is_resolved_by_refetching(world: World) -> None:
    ids = world.catalog()
    cus = world.customer()
    sub = world.client.v1.subscriptions.create({"customer": cus, "items": [{"price": ids["pro_price"]}]})
    world.sync()
    with Session(world.engine) as session:
        row = session.get(StripeSubscription, sub.id)
        assert row is not None
        watermark = row.source_created
        stale_copy = {**row.data, "status": "canceled"}
    # Another event from the same second claims the subscription is canceled: Stripe says no.
    put(world, sub_event("evt_tie", watermark, stale_copy))
    apply_pending(world.engine, world.client, options=NO_REFETCH, now=ts(world.now))
    assert world.company(cus).base == "pro"
    with Session(world.engine) as session:
        row = session.get(StripeSubscription, sub.id)
        assert row is not None and row.status == "active"


def test_echo_of_our_own_write_is_mirrored_not_remapped(world: World) -> None:
    ids = world.catalog()
    put(
        world,
        sub_event(
            "evt_echo", T0, legacy_sub("sub_e", "cus_e", ids["pro"]), idempotency_key="syncd-plan:comp_1:3"
        ),
    )
    apply_pending(world.engine, None, options=NO_REFETCH, now=ts(T0))
    with Session(world.engine) as session:
        assert session.get(StripeSubscription, "sub_e") is not None
        assert session.exec(select(CompanyKey).where(CompanyKey.value == "cus_e")).first() is None


def test_poison_event_is_retried_then_failed_without_blocking_others(
    emulator: BackgroundServer, database_url: str, tmp_path: Path
) -> None:
    """On Postgres the two events share a batch transaction: the poison one rolls back alone."""
    world = World(emulator, database_url, tmp_path, SYNCD_STRIPE_MAX_NETWORK_RETRIES="0")
    try:
        ids = world.catalog()
        world.faults(server_error_count=100, paths=["/v1/subscriptions/sub_poison"])
        put(world, sub_event("evt_poison", T0, legacy_sub("sub_poison", "cus_p", ids["pro"])))
        customer = {"id": "cus_g", "object": "customer", "name": "Good Co"}
        put(world, sub_event("evt_good", T0 + 1, customer, etype="customer.created"))
        options = ApplyOptions(max_attempts=2)
        first = apply_pending(world.engine, world.client, options=options, now=ts(T0))
        assert (first.failed, first.applied) == (1, 1)
        apply_pending(world.engine, world.client, options=options, now=ts(T0))
        by_id = {e.event_id: e for e in world.inbox()}
        poison = by_id["evt_poison"]
        assert (poison.status, poison.attempts) == ("failed", 2)
        assert poison.last_error is not None and "APIError" in poison.last_error
        assert by_id["evt_good"].status == "applied"
        assert world.company("cus_g").base == "free"  # created on first sight, initial plan
        good = world.company("cus_g").id
        assert {c.company_id for c in world.change_log("entitlements.changed") if c.company_id} == {good}
    finally:
        world.close()


def test_unmapped_types_are_ignored(world: World) -> None:
    event = sub_event("evt_summary", T0, {"id": "eas_1", "object": "entitlements.active_entitlement_summary"})
    event["type"] = "entitlements.active_entitlement_summary.updated"
    put(world, event)
    result = apply_pending(world.engine, None, now=ts(T0))
    assert result.ignored == 1
    assert [e.status for e in world.inbox()] == ["ignored"]
