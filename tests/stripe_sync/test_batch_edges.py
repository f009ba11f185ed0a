"""Edge cases of set-based application (webhook batches and sweep pages): a company reached
through two Stripe customers, bulk company creation declining, and writes that fail midway."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, col, select

from syncd.models import CompanyKey, CompanyPlan, CreditType, Plan, PlanChange, PlanCreditGrant
from syncd.services import keys as entity_keys
from syncd.services.company_plans import published_version
from syncd.stripe_emulator import BackgroundServer
from syncd.stripe_sync import rows
from syncd.stripe_sync.apply import apply_pending
from syncd.stripe_sync.mapping import ts
from syncd.stripe_sync.sweep import sweep

from .harness import World
from .test_apply import NO_REFETCH, T0, legacy_sub, put, sub_event
from .test_batch import customer_event


def subscribed(event_id: str, created: int, sub_id: str, customer: str, product: str) -> dict[str, Any]:
    return sub_event(
        event_id, created, legacy_sub(sub_id, customer, product), etype="customer.subscription.created"
    )


def base_rows(world: World, company_id: str) -> list[str]:
    with Session(world.engine) as session:
        keys = {p.id: p.key for p in session.exec(select(Plan)).all()}
        found = session.exec(select(CompanyPlan).where(col(CompanyPlan.company_id) == company_id)).all()
        return sorted(keys[r.plan_id] for r in found if r.role == "base")


def grant_credits_on_initial_plan(world: World) -> None:
    with Session(world.engine) as session:
        free = session.exec(select(Plan).where(col(Plan.key) == "free")).one()
        version = published_version(session, free.id)
        assert version is not None
        credit = CreditType(key="ai", name="AI")
        session.add(credit)
        session.flush()
        session.add(PlanCreditGrant(plan_version_id=version.id, credit_type_id=credit.id, credit_amount=100))
        session.commit()


def relink(world: World, company_id: str, customer: str) -> None:
    """The company's Stripe key moves to another customer (an API upsert with a new value)."""
    with Session(world.engine) as session:
        entity_keys.set_keys(session, entity_keys.COMPANY_KEYS, company_id, {"stripe_customer_id": customer})
        session.commit()


def test_a_company_reached_through_two_customers_in_one_batch_keeps_one_base_plan(world: World) -> None:
    ids = world.catalog()
    put(world, customer_event("evt_ca", T0, "cus_a", "A"))
    assert apply_pending(world.engine, None, options=NO_REFETCH, now=ts(T0)).failed == 0
    company_id = world.company("cus_a").id
    relink(world, company_id, "cus_b")
    put(world, customer_event("evt_cb", T0 + 1, "cus_b", "B"))
    put(world, subscribed("evt_sa", T0 + 2, "sub_a", "cus_a", ids["pro"]))
    put(world, subscribed("evt_sb", T0 + 3, "sub_b", "cus_b", ids["enterprise"]))
    assert apply_pending(world.engine, None, options=NO_REFETCH, now=ts(T0)).failed == 0
    assert len(base_rows(world, company_id)) == 1
    with Session(world.engine) as session:
        moves = session.exec(
            select(PlanChange).where(
                col(PlanChange.company_id) == company_id, col(PlanChange.action) == "billing_sync"
            )
        ).all()
    # Each move starts from where the previous one left the company.
    assert {m.previous_base_plan_id for m in moves[1:]} <= {m.base_plan_id for m in moves}


def test_a_sweep_page_reaching_one_company_through_two_customers(world: World) -> None:
    ids = world.catalog()
    a = world.customer(name="A")
    sweep(world.engine, world.client, kinds=("customer",), resume=False)
    company_id = world.company(a).id
    b = world.customer(name="B")
    relink(world, company_id, b)
    world.client.v1.subscriptions.create({"customer": a, "items": [{"price": ids["pro_price"]}]})
    world.client.v1.subscriptions.create({"customer": b, "items": [{"price": ids["enterprise_price"]}]})
    sweep(world.engine, world.client, resume=False)
    assert len(base_rows(world, company_id)) == 1


def test_concurrent_sweep_pages_take_turns_on_a_company_two_customers_share(pg_world: World) -> None:
    """Pages on several threads: customer locks alone let two pages map one company at once
    (two base plans, or a unique violation); the company locks make them take turns."""
    world = pg_world
    ids = world.catalog()
    firsts = [world.customer(name=f"A{n}") for n in range(8)]
    sweep(world.engine, world.client, kinds=("customer",), resume=False)
    shared: list[str] = []
    for n, first in enumerate(firsts):
        company_id = world.company(first).id
        second = world.customer(name=f"B{n}")
        relink(world, company_id, second)
        shared.append(company_id)
        other = "pro_price" if n % 2 else "enterprise_price"  # odd: both on pro
        world.client.v1.subscriptions.create({"customer": first, "items": [{"price": ids["pro_price"]}]})
        world.client.v1.subscriptions.create({"customer": second, "items": [{"price": ids[other]}]})
    sweep(world.engine, world.client, resume=False, page_size=1, workers=4)
    assert {company_id: len(base_rows(world, company_id)) for company_id in shared} == dict.fromkeys(
        shared, 1
    )


def test_customers_get_companies_when_bulk_creation_declines(world: World) -> None:
    """Initial-plan credits are issued by the per-customer service: the batch hands over."""
    world.catalog()
    grant_credits_on_initial_plan(world)
    put(
        world,
        sub_event(
            "evt_cr",
            T0,
            {"id": "cus_cr", "object": "customer", "name": "Credits Co"},
            etype="customer.created",
        ),
    )
    assert apply_pending(world.engine, None, options=NO_REFETCH, now=ts(T0)).failed == 0
    swept = world.customer(name="Sweep Credits")
    sweep(world.engine, world.client, kinds=("customer",), resume=False)
    with Session(world.engine) as session:
        for customer in ("cus_cr", swept):
            key = session.exec(select(CompanyKey).where(col(CompanyKey.value) == customer)).first()
            assert key is not None, customer
            assert world.company(customer).base == "free"


def failing_writes(monkeypatch: pytest.MonkeyPatch, failures: set[int], error: Exception) -> None:
    """Make the first statement of the given calls (1-based) of ``PendingWrites.send`` fail."""
    real = rows.PendingWrites.send
    calls = [0]

    def flaky(self: rows.PendingWrites, session: Session) -> None:
        calls[0] += 1
        if calls[0] not in failures:
            return real(self, session)

        def boom(*_: Any, **__: Any) -> Any:
            raise error

        session.execute = boom  # type: ignore[method-assign]
        try:
            return real(self, session)
        finally:
            del session.execute

    monkeypatch.setattr(rows.PendingWrites, "send", flaky)


def two_customers(world: World) -> dict[str, str]:
    """The catalog and two applied customers, cus_x and cus_y; returns the catalog's ids."""
    ids = world.catalog()
    put(world, customer_event("evt_cx", T0, "cus_x", "X"))
    put(world, customer_event("evt_cy", T0, "cus_y", "Y"))
    assert apply_pending(world.engine, None, options=NO_REFETCH, now=ts(T0)).failed == 0
    return ids


def test_a_failed_write_leaves_nothing_for_the_next_event(
    emulator: BackgroundServer, postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Postgres fallback: one transaction, a savepoint per event, one mapping context."""
    world = World(emulator, postgres_url, tmp_path)
    try:
        ids = two_customers(world)
        put(world, subscribed("evt_sx", T0 + 2, "sub_x", "cus_x", ids["pro"]))
        put(world, subscribed("evt_sy", T0 + 3, "sub_y", "cus_y", ids["enterprise"]))
        failing_writes(monkeypatch, {1, 2}, RuntimeError("simulated failure"))  # the batch, then evt_sx
        first = apply_pending(world.engine, None, options=NO_REFETCH, now=ts(T0))
        assert first.failed == 1 and world.company("cus_y").base == "enterprise"
        assert world.company("cus_x").base == "free"  # its event failed: its move is not committed
        monkeypatch.undo()
        assert apply_pending(world.engine, None, options=NO_REFETCH, now=ts(T0)).failed == 0
        x = world.company("cus_x")
        assert x.base == "pro"
        reasons = [
            c.payload.get("reason") for c in world.change_log("company.plan_changed") if c.company_id == x.id
        ]
        assert "billing_sync" in reasons  # adapters hear about the move when it is applied
    finally:
        world.close()


def test_a_transient_error_is_retried_cleanly_on_sqlite(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = world.catalog()
    put(world, customer_event("evt_c", T0, "cus_r", "R"))
    assert apply_pending(world.engine, None, options=NO_REFETCH, now=ts(T0)).failed == 0
    put(world, subscribed("evt_s", T0 + 2, "sub_r", "cus_r", ids["pro"]))
    locked = OperationalError("DELETE ...", {}, Exception("database is locked"))
    failing_writes(monkeypatch, {1, 2}, locked)  # the batch, then apply_one's first attempt
    assert apply_pending(world.engine, None, options=NO_REFETCH, now=ts(T0)).failed == 0
    assert world.company("cus_r").base == "pro"


_BOOM = """
CREATE TABLE boom_target (company_id varchar PRIMARY KEY);
CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM boom_target WHERE company_id = NEW.company_id) THEN
        RAISE EXCEPTION 'simulated deadlock' USING ERRCODE = '40P01';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER boom BEFORE INSERT ON plan_change FOR EACH ROW EXECUTE FUNCTION boom();
"""


def test_a_deadlock_in_pipelined_writes_spends_no_attempt(
    emulator: BackgroundServer, postgres_url: str, tmp_path: Path
) -> None:
    """A deadlock victim is retried later without spending an attempt, also when the error
    surfaces at the end of a pipeline (raw from the driver, not from a statement)."""
    world = World(emulator, postgres_url, tmp_path)
    try:
        ids = two_customers(world)
        with world.engine.begin() as conn:
            conn.exec_driver_sql(_BOOM)
            conn.execute(text("INSERT INTO boom_target VALUES (:c)"), {"c": world.company("cus_x").id})
        put(world, subscribed("evt_sx", T0 + 2, "sub_x", "cus_x", ids["pro"]))
        put(world, subscribed("evt_sy", T0 + 3, "sub_y", "cus_y", ids["enterprise"]))
        result = apply_pending(world.engine, None, options=NO_REFETCH, now=ts(T0))
        assert result.failed == 0 and world.company("cus_y").base == "enterprise"
        by_id = {e.event_id: e for e in world.inbox()}
        assert (by_id["evt_sx"].status, by_id["evt_sx"].attempts, by_id["evt_sx"].last_error) == (
            "pending",
            0,
            None,
        )
    finally:
        world.close()
