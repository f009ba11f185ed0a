"""Set-based batches: duplicates, out-of-order events and mixed kinds in one batch, poison events."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlmodel import Session, col, select

from syncd.models import AuditLog, Company, CompanyPlan, PlanChange, StripeSubscription, utcnow
from syncd.services.audit import Actor, snapshot
from syncd.stripe_emulator import BackgroundServer
from syncd.stripe_sync import rows
from syncd.stripe_sync.apply import ApplyOptions, apply_pending
from syncd.stripe_sync.batch import claim_next
from syncd.stripe_sync.inbox import store_event
from syncd.stripe_sync.mapping import ts

from .harness import World
from .test_apply import NO_REFETCH, T0, legacy_sub, put, sub_event


def customer_event(event_id: str, created: int, customer: str, name: str) -> dict[str, Any]:
    obj = {"id": customer, "object": "customer", "name": name}
    return sub_event(event_id, created, obj, etype="customer.created")


def with_quantity(sub: dict[str, Any], quantity: int) -> dict[str, Any]:
    items = [{**i, "quantity": quantity} for i in sub["items"]["data"]]
    return {**sub, "quantity": quantity, "items": {**sub["items"], "data": items}}


def plan_changes(world: World, company_id: str) -> int:
    return sum(1 for c in world.change_log("company.plan_changed") if c.company_id == company_id)


def test_duplicate_deliveries_in_one_batch_are_no_ops(
    database_url: str, emulator: BackgroundServer, tmp_path: Path
) -> None:
    world = World(emulator, database_url, tmp_path)
    try:
        ids = world.catalog()
        event = sub_event(
            "evt_dup", T0, legacy_sub("sub_d", "cus_d", ids["pro"]), etype="customer.subscription.created"
        )
        put(world, event)
        put(world, event)  # the same delivery again
        with world.engine.begin() as conn:  # and seen once more through the Events API
            assert not store_event(conn, json.dumps(event).encode(), event, source="replay").inserted
        # The same snapshot under another event id (Stripe resends it in a later event).
        put(world, {**event, "id": "evt_dup_again"})
        result = apply_pending(world.engine, None, options=NO_REFETCH, now=ts(T0))
        assert result.processed == 2 and result.failed == 0
        company = world.company("cus_d")
        assert company.base == "pro"
        # Created on first sight straight on Pro (its subscription is in the batch): one
        # change, and the duplicates add none.
        assert plan_changes(world, company.id) == 1
        assert len(world.inbox()) == 2 and {e.status for e in world.inbox()} == {"applied"}
    finally:
        world.close()


def test_out_of_order_events_for_one_subscription_in_one_batch(
    database_url: str, emulator: BackgroundServer, tmp_path: Path
) -> None:
    world = World(emulator, database_url, tmp_path)
    try:
        ids = world.catalog()
        sub = legacy_sub("sub_o", "cus_o", ids["pro"])
        put(world, sub_event("evt_3", T0 + 5, with_quantity(sub, 3)))  # newest, stored first
        put(world, sub_event("evt_1", T0, sub, etype="customer.subscription.created"))
        put(world, sub_event("evt_2", T0 + 2, with_quantity(sub, 2)))
        put(world, sub_event("evt_4", T0 + 9, {**sub, "status": "canceled"}))
        put(world, sub_event("evt_0", T0 - 5, with_quantity(sub, 7)))  # older than everything
        result = apply_pending(world.engine, None, options=NO_REFETCH, now=ts(T0))
        assert result.failed == 0 and result.processed == 5
        with Session(world.engine) as session:
            row = session.get(StripeSubscription, "sub_o")
            assert row is not None and (row.status, row.source_id) == ("canceled", "evt_4")
        assert world.company("cus_o").base == "free"  # canceled wins; never left on Pro
        # A late straggler after the batch is stale too.
        put(world, sub_event("evt_5", T0 + 7, with_quantity(sub, 4)))
        late = apply_pending(world.engine, None, options=NO_REFETCH, now=ts(T0))
        assert late.stale == 1
        assert world.company("cus_o").base == "free"
    finally:
        world.close()


def test_out_of_order_updates_keep_the_newest_quantity(
    database_url: str, emulator: BackgroundServer, tmp_path: Path
) -> None:
    world = World(emulator, database_url, tmp_path)
    try:
        ids = world.catalog()
        sub = legacy_sub("sub_q", "cus_q", ids["pro"])
        put(world, sub_event("evt_q3", T0 + 5, with_quantity(sub, 3)))
        put(world, sub_event("evt_q1", T0, sub, etype="customer.subscription.created"))
        put(world, sub_event("evt_q2", T0 + 2, with_quantity(sub, 2)))
        result = apply_pending(world.engine, None, options=NO_REFETCH, now=ts(T0))
        # Claimed in Stripe-time order, so each one is newer than the one before it.
        assert (result.applied, result.stale, result.failed) == (3, 0, 0)
        company = world.company("cus_q")
        assert company.base == "pro"
        assert [r.quantity for r in company.rows if r.role == "base"] == [3]
    finally:
        world.close()


def test_mixed_customers_subscriptions_and_products_in_one_batch(
    database_url: str, emulator: BackgroundServer, tmp_path: Path
) -> None:
    world = World(emulator, database_url, tmp_path)
    try:
        ids = world.catalog()
        product = {"id": ids["pro"], "object": "product", "name": "Pro", "active": True, "metadata": {}}
        put(world, sub_event("evt_p", T0, product, etype="product.updated"))
        for n in range(5):
            put(world, customer_event(f"evt_c{n}", T0 + n, f"cus_m{n}", f"Mixed {n}"))
            sub = legacy_sub(f"sub_m{n}", f"cus_m{n}", ids["pro"] if n % 2 == 0 else ids["enterprise"])
            put(world, sub_event(f"evt_s{n}", T0 + n, sub, etype="customer.subscription.created"))
        put(world, customer_event("evt_lonely", T0, "cus_lonely", "No Subscription"))
        result = apply_pending(world.engine, None, options=NO_REFETCH, now=ts(T0))
        assert (result.applied, result.failed) == (12, 0)
        for n in range(5):
            company = world.company(f"cus_m{n}")
            assert company.base == ("pro" if n % 2 == 0 else "enterprise")
        assert world.company("cus_lonely").base == "free"
        # One change_log row per company, written once for the whole batch.
        changed = [c.company_id for c in world.change_log("entitlements.changed") if c.company_id]
        assert len(changed) == len(set(changed)) == 6
    finally:
        world.close()


def test_poison_event_in_a_batch_does_not_block_the_others(
    emulator: BackgroundServer, database_url: str, tmp_path: Path
) -> None:
    world = World(emulator, database_url, tmp_path, SYNCD_STRIPE_MAX_NETWORK_RETRIES="0")
    try:
        ids = world.catalog()
        world.faults(server_error_count=100, paths=["/v1/subscriptions/sub_bad"])
        for n in range(3):
            put(world, customer_event(f"evt_ok{n}", T0 + n, f"cus_ok{n}", f"Fine {n}"))
        put(world, sub_event("evt_bad", T0 + 1, legacy_sub("sub_bad", "cus_ok1", ids["pro"])))
        options = ApplyOptions(max_attempts=2, refetch=frozenset({"subscription"}))
        first = apply_pending(world.engine, world.client, options=options, now=ts(T0))
        assert (first.applied, first.failed) == (3, 1)
        second = apply_pending(world.engine, world.client, options=options, now=ts(T0))
        assert (second.applied, second.failed) == (0, 1)
        by_id = {e.event_id: e for e in world.inbox()}
        assert (by_id["evt_bad"].status, by_id["evt_bad"].attempts) == ("failed", 2)
        assert all(by_id[f"evt_ok{n}"].status == "applied" for n in range(3))
        assert all(by_id[f"evt_ok{n}"].attempts == 1 for n in range(3))
        for n in range(3):
            company = world.company(f"cus_ok{n}")
            assert company.base == "free"
            assert plan_changes(world, company.id) == 1  # applied once, not once per try
    finally:
        world.close()


def test_a_failing_event_is_tried_once_per_pass_however_many_batches_follow(
    emulator: BackgroundServer, database_url: str, tmp_path: Path
) -> None:
    """The oldest pending event fails: later batches of the same pass must not claim it
    again (each retry would spend an attempt; a transient fault would dead-letter it)."""
    world = World(emulator, database_url, tmp_path, SYNCD_STRIPE_MAX_NETWORK_RETRIES="0")
    try:
        ids = world.catalog()
        world.faults(server_error_count=100, paths=["/v1/subscriptions/sub_bad"])
        put(world, sub_event("evt_bad", T0, legacy_sub("sub_bad", "cus_b", ids["pro"])))
        for n in range(6):
            put(world, customer_event(f"evt_ok{n}", T0 + 1 + n, f"cus_ok{n}", f"Fine {n}"))
        options = ApplyOptions(max_attempts=5, refetch=frozenset({"subscription"}))
        result = apply_pending(world.engine, world.client, options=options, now=ts(T0), batch=2)
        assert (result.applied, result.failed) == (6, 1)
        by_id = {e.event_id: e for e in world.inbox()}
        assert (by_id["evt_bad"].status, by_id["evt_bad"].attempts) == ("pending", 1)
    finally:
        world.close()


def test_companies_created_for_a_batch_match_the_service_path(world: World) -> None:
    """Bulk-created companies carry what ``upsert_company`` writes: key, initial plan, history."""
    world.catalog()
    for n in range(3):
        put(world, customer_event(f"evt_n{n}", T0 + n, f"cus_n{n}", f"New {n}"))
    put(world, customer_event("evt_n0_again", T0 + 5, "cus_n0", "New 0 renamed"))
    apply_pending(world.engine, None, options=NO_REFETCH, now=ts(T0))
    with Session(world.engine) as session:
        for n in range(3):
            company = world.company(f"cus_n{n}")
            assert company.base == "free" and [r.source for r in company.rows] == ["initial"]
            row = session.get(Company, company.id)
            assert row is not None and row.name == ("New 0 renamed" if n == 0 else f"New {n}")
            [change] = session.exec(select(PlanChange).where(col(PlanChange.company_id) == company.id)).all()
            assert (change.action, change.base_plan_action, change.actor_type) == (
                "company_upsert",
                "initial",
                "stripe",
            )
            actions = sorted(
                a.action
                for a in session.exec(select(AuditLog).where(col(AuditLog.entity_id) == company.id)).all()
            )
            assert actions[:2] == ["company.created", "company.plan_changed"]
            events = [c for c in world.change_log("company.plan_changed") if c.company_id == company.id]
            assert [e.payload["reason"] for e in events] == ["company_upsert"]
            assert events[0].payload["plan_change_id"] == change.id


def test_plan_moves_written_as_plain_rows_match_the_models(world: World) -> None:
    """A batch moving new customers from the initial plan to Pro writes, per company, the rows
    and history the ORM path writes: one base row with the billing columns, two plan changes,
    their audit entries, and change-log events naming the stored plan changes."""
    ids = world.catalog()
    for n in range(3):  # companies on the initial plan first (a batch of their own)
        put(world, customer_event(f"evt_m{n}", T0, f"cus_m{n}", f"Moved {n}"))
    assert apply_pending(world.engine, None, options=NO_REFETCH, now=ts(T0)).processed == 3
    for n in range(3):
        sub = with_quantity(legacy_sub(f"sub_m{n}", f"cus_m{n}", ids["pro"]), n + 1)
        put(world, sub_event(f"evt_ms{n}", T0 + 1, sub, etype="customer.subscription.created"))
    result = apply_pending(world.engine, None, options=NO_REFETCH, now=ts(T0))
    assert result.processed == 3 and result.failed == 0
    with Session(world.engine) as session:
        for n in range(3):
            company = world.company(f"cus_m{n}")
            assert company.base == "pro"
            [row] = company.rows
            assert (row.source, row.quantity, row.stripe_subscription_id) == ("billing", n + 1, f"sub_m{n}")
            changes = session.exec(
                select(PlanChange)
                .where(col(PlanChange.company_id) == company.id)
                .order_by(col(PlanChange.action))
            ).all()
            assert [c.action for c in changes] == ["billing_sync", "company_upsert"]
            audits = session.exec(select(AuditLog).where(col(AuditLog.entity_id) == company.id)).all()
            moved = next(a for a in audits if a.after and a.after.get("action") == "billing_sync")
            assert moved.after == snapshot(changes[0])  # the model's own JSON rendering
            events = [c for c in world.change_log("company.plan_changed") if c.company_id == company.id]
            assert {e.payload["plan_change_id"] for e in events} == {c.id for c in changes}


def test_a_new_customer_and_its_subscription_in_one_batch_start_on_the_billing_plan(world: World) -> None:
    """No initial plan and then a move: one plan change, from nothing to the billing plan. A
    customer whose subscription grants nothing starts on the initial plan as before."""
    ids = world.catalog()
    put(world, customer_event("evt_n", T0, "cus_n", "New"))
    put(
        world,
        sub_event(
            "evt_ns", T0 + 1, legacy_sub("sub_n", "cus_n", ids["pro"]), etype="customer.subscription.created"
        ),
    )
    put(world, customer_event("evt_l", T0, "cus_l", "Lapsed"))
    lapsed = {**legacy_sub("sub_l", "cus_l", ids["pro"]), "status": "canceled"}
    put(world, sub_event("evt_ls", T0 + 1, lapsed, etype="customer.subscription.deleted"))
    assert apply_pending(world.engine, None, options=NO_REFETCH, now=ts(T0)).failed == 0
    new = world.company("cus_n")
    assert new.base == "pro" and world.company("cus_l").base == "free"
    with Session(world.engine) as session:
        [change] = session.exec(select(PlanChange).where(col(PlanChange.company_id) == new.id)).all()
    assert (change.action, change.previous_base_plan_id, change.actor) == ("billing_sync", None, "sub_n")
    [event] = [c for c in world.change_log("company.plan_changed") if c.company_id == new.id]
    assert event.payload["plan_change_id"] == change.id


def test_plain_rows_render_like_the_models() -> None:
    now = utcnow()
    change = rows.plan_change_row(
        "comp_x", "billing_sync", Actor("stripe", "sub_1"), now, base_plan_id="plan_a"
    )
    assert rows.snapshot(change) == snapshot(PlanChange(**change))
    company = rows.company_row("Acme", now)
    assert rows.snapshot(company) == snapshot(Company(**company))
    plan = rows.plan_row("comp_x", "plan_a", "plnv_a", now, source="billing", quantity=3)
    assert rows.snapshot(plan) == snapshot(CompanyPlan(**plan))


def test_concurrent_claims_take_disjoint_batches(pg_world: World) -> None:
    """Two appliers (daemon replicas) claim the oldest pending events without waiting for
    each other's uncommitted claims, and never the same event."""
    for n in range(4):
        put(pg_world, customer_event(f"evt_c{n}", T0 + n, f"cus_c{n}", f"C{n}"))
    with Session(pg_world.engine) as first, Session(pg_world.engine) as second:
        second.execute(text("SET LOCAL lock_timeout = '2s'"))  # a wait would fail, not hang
        taken = sorted(event_id for event_id, _ in claim_next(first, 2))
        assert taken == ["evt_c0", "evt_c1"]  # the oldest first
        assert sorted(event_id for event_id, _ in claim_next(second, 5)) == ["evt_c2", "evt_c3"]
        first.rollback()  # a rolled-back claim leaves its events pending for the next pass
        second.rollback()
    result = apply_pending(pg_world.engine, None, options=NO_REFETCH, now=ts(T0))
    assert result.applied == 4 and {e.status for e in pg_world.inbox()} == {"applied"}


def test_a_batch_writes_each_claimed_event_once_and_counts_its_attempt(pg_world: World) -> None:
    """The claim is a row lock (``SELECT ... FOR UPDATE SKIP LOCKED``), not an update: an
    event's row is rewritten once, by the mark, which also counts the attempt."""
    pg_world.catalog()
    for n in range(3):
        put(pg_world, customer_event(f"evt_w{n}", T0 + n, f"cus_w{n}", f"W{n}"))
    inbox_writes: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "inbox_event" in statement and not statement.lstrip().upper().startswith("SELECT"):
            inbox_writes.append(" ".join(statement.split())[:60])
        elif "inbox_event" in statement:
            assert "FOR UPDATE SKIP LOCKED" in statement

    event.listen(pg_world.engine, "before_cursor_execute", seen)
    try:
        result = apply_pending(pg_world.engine, None, options=NO_REFETCH, now=ts(T0))
    finally:
        event.remove(pg_world.engine, "before_cursor_execute", seen)
    assert result.applied == 3
    assert len(inbox_writes) == 1 and inbox_writes[0].startswith("UPDATE inbox_event SET status=")
    assert {(e.status, e.attempts) for e in pg_world.inbox()} == {("applied", 1)}
