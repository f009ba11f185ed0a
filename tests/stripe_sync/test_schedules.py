"""Inbound subscription schedules: a pending phase to a cheaper plan is a local ScheduledDowngrade."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlmodel import Session, col, select

from syncd.models import Plan, ScheduledDowngrade
from syncd.stripe_sync.apply import apply_pending
from syncd.stripe_sync.locks import lock_key
from syncd.stripe_sync.mapping import MappingContext, ts
from syncd.stripe_sync.sweep import apply_page
from syncd.stripe_sync.sweep_pool import SweepResult

from .harness import Company, World
from .test_apply import NO_REFETCH, T0, put, sub_event
from .test_batch import customer_event


def downgrades(world: World) -> list[ScheduledDowngrade]:
    with Session(world.engine) as session:
        return list(
            session.exec(select(ScheduledDowngrade).order_by(col(ScheduledDowngrade.created_at))).all()
        )


def plan_id(world: World, key: str) -> str:
    with Session(world.engine) as session:
        return session.exec(select(Plan.id).where(col(Plan.key) == key)).one()


def schedule_change(world: World, ids: dict[str, str], customer: str, now_price: str, next_price: str) -> Any:
    """A subscription on ``now_price`` whose schedule moves it to ``next_price`` at period end."""
    v1 = world.client.v1
    sub = v1.subscriptions.create({"customer": customer, "items": [{"price": ids[now_price]}]})
    world.sync()
    sched = v1.subscription_schedules.create({"from_subscription": sub.id})
    phase = sched.phases[0]
    return v1.subscription_schedules.update(
        sched.id,
        {
            "phases": [
                {
                    "items": [{"price": ids[now_price], "quantity": 1}],
                    "start_date": phase.start_date,
                    "end_date": phase.end_date,
                },
                {
                    "items": [{"price": ids[next_price], "quantity": 1}],
                    "duration": {"interval": "month", "interval_count": 1},
                },
            ],
            "end_behavior": "release",
        },
    )


def test_pending_downgrade_phase_becomes_visible_then_applied(world: World) -> None:
    ids = world.catalog()
    cus = world.customer()
    sched = schedule_change(world, ids, cus, "enterprise_price", "pro_price")
    world.sync()
    company = world.company(cus)
    assert company.base == "enterprise"
    [row] = downgrades(world)
    assert (row.stripe_schedule_id, row.status, row.company_id) == (sched.id, "pending", company.id)
    assert (row.from_plan_id, row.to_plan_id) == (plan_id(world, "enterprise"), plan_id(world, "pro"))
    assert row.effective_after == ts(sched.phases[1].start_date)
    assert any(c.topic == "company.scheduled_downgrade" for c in world.change_log())
    # The phase starts: Stripe moves the subscription; the row is applied, not duplicated.
    world.advance(days=32)
    world.sync()
    assert world.company(cus).base == "pro"
    [row] = downgrades(world)
    assert row.status == "applied"


def test_row_created_locally_is_upserted_not_duplicated(world: World) -> None:
    ids = world.catalog()
    cus = world.customer()
    sched = schedule_change(world, ids, cus, "enterprise_price", "pro_price")
    company = world.company(cus)
    with Session(world.engine) as session:  # as syncd's own plan-change flow writes it
        session.add(
            ScheduledDowngrade(
                company_id=company.id,
                from_plan_id=plan_id(world, "enterprise"),
                to_plan_id=plan_id(world, "pro"),
                effective_after=ts(sched.phases[1].start_date + 3600),
                stripe_schedule_id=sched.id,
            )
        )
        session.commit()
    world.sync()
    [row] = downgrades(world)
    assert (row.status, row.effective_after) == ("pending", ts(sched.phases[1].start_date))


def test_released_schedule_cancels_the_pending_row(world: World) -> None:
    ids = world.catalog()
    cus = world.customer()
    sched = schedule_change(world, ids, cus, "enterprise_price", "pro_price")
    world.sync()
    assert [r.status for r in downgrades(world)] == ["pending"]
    world.client.v1.subscription_schedules.release(sched.id)
    world.sync()
    assert [r.status for r in downgrades(world)] == ["canceled"]
    assert world.company(cus).base == "enterprise"


def test_scheduled_upgrade_is_not_a_downgrade(world: World) -> None:
    ids = world.catalog()
    cus = world.customer()
    schedule_change(world, ids, cus, "pro_price", "enterprise_price")
    world.sync()
    assert downgrades(world) == []


def _company_locks(world: World, run: Callable[[], object]) -> set[int]:
    """The advisory lock keys ``run`` takes (Postgres)."""
    taken: set[int] = set()

    def seen(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if "pg_advisory_xact_lock" in statement and isinstance(params, dict) and "keys" in params:
            taken.update(int(k) for k in str(params["keys"]).strip("{}").split(",") if k)

    event.listen(world.engine, "before_cursor_execute", seen)
    try:
        run()
    finally:
        event.remove(world.engine, "before_cursor_execute", seen)
    return taken


def _schedule(customer: str) -> dict[str, Any]:
    return {
        "id": f"sub_sched_{customer}",
        "object": "subscription_schedule",
        "customer": customer,
        "subscription": None,
        "status": "active",
        "phases": [],
    }


def _customer_with_company(world: World, customer: str) -> Company:
    """A customer whose ``customer.created`` has been applied: its company exists."""
    world.catalog()
    put(world, customer_event(f"evt_{customer}", T0, customer, customer))
    apply_pending(world.engine, None, options=NO_REFETCH, now=ts(T0))
    return world.company(customer)


def test_a_schedule_event_locks_its_company(pg_world: World) -> None:
    """A company may have several Stripe customers: mapping one customer's schedule must take
    the company's lock, as mapping its subscriptions does, not only the customer's."""
    company = _customer_with_company(pg_world, "cus_sl")
    put(pg_world, sub_event("evt_sched", T0 + 1, _schedule("cus_sl"), etype="subscription_schedule.updated"))
    taken = _company_locks(
        pg_world, lambda: apply_pending(pg_world.engine, None, options=NO_REFETCH, now=ts(T0))
    )
    assert lock_key("customer:cus_sl") in taken
    assert lock_key(f"company:{company.id}") in taken


def test_a_swept_schedule_page_locks_its_companies(pg_world: World) -> None:
    company = _customer_with_company(pg_world, "cus_sp")

    def sweep_page() -> None:
        with Session(pg_world.engine) as session:
            apply_page(
                session,
                None,
                "subscription_schedule",
                [_schedule("cus_sp")],
                MappingContext(now=ts(T0)),
                created=T0 + 5,
                result=SweepResult(),
            )
            session.commit()

    taken = _company_locks(pg_world, sweep_page)
    assert lock_key(f"company:{company.id}") in taken
