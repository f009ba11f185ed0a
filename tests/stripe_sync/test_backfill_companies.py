"""A sweep's companies: customers with subscriptions get theirs from the subscriptions pass,
straight on their billing plan; the closing pass links or creates the rest."""

from __future__ import annotations

import pytest
from sqlmodel import Session, col, select

from syncd.models import AuditLog, Company, CompanyKey, StripeCustomer
from syncd.services import companies
from syncd.stripe_sync.mapping import ts
from syncd.stripe_sync.sweep import sweep

from .billing_helpers import plan_changes
from .harness import World


def audit_actions(world: World, company_id: str) -> list[str]:
    with Session(world.engine) as session:
        return sorted(
            a.action
            for a in session.exec(select(AuditLog).where(col(AuditLog.entity_id) == company_id)).all()
        )


def unlinked(world: World) -> set[str]:
    with Session(world.engine) as session:
        return set(
            session.exec(
                select(StripeCustomer.stripe_id).where(col(StripeCustomer.company_id).is_(None))
            ).all()
        )


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_backfill_puts_subscribed_companies_straight_on_their_billing_plan(
    backend: str, world: World, pg_world: World
) -> None:
    world = world if backend == "sqlite" else pg_world
    ids = world.catalog()
    paying, free, lapsed = (
        world.customer(name="Paying"),
        world.customer(name="Free"),
        world.customer(name="Lapsed"),
    )
    world.client.v1.subscriptions.create({"customer": paying, "items": [{"price": ids["pro_price"]}]})
    ended = world.client.v1.subscriptions.create({"customer": lapsed, "items": [{"price": ids["pro_price"]}]})
    world.client.v1.subscriptions.cancel(ended.id)

    result = sweep(world.engine, world.client, resume=False, now=ts(world.now))

    assert (world.company(paying).base, world.company(free).base, world.company(lapsed).base) == (
        "pro",
        "free",
        "free",
    )
    assert result.linked == 1  # only the customer without any subscription waited for the closing pass
    assert unlinked(world) == set()
    company_id = world.company(paying).id
    [change] = plan_changes(world, company_id)  # no initial plan first, then a move
    assert (change.action, change.previous_base_plan_id) == ("billing_sync", None)
    assert change.subscription_change_action is not None
    assert audit_actions(world, company_id) == ["company.created", "company.plan_changed"]
    [event] = [c for c in world.change_log("company.plan_changed") if c.company_id == company_id]
    assert event.payload["previous_base_plan_id"] is None
    assert event.payload["base_plan_id"] == change.base_plan_id
    with Session(world.engine) as session:
        names = {c.name for c in session.exec(select(Company)).all()}
    assert names == {"Paying", "Free", "Lapsed"}
    for customer in (free, lapsed):  # the initial plan, as a customer's first sight gives it
        [initial] = plan_changes(world, world.company(customer).id)
        assert initial.base_plan_action == "initial"


def test_a_sweep_stopped_before_its_subscriptions_links_everyone_when_resumed(world: World) -> None:
    ids = world.catalog()
    customers = [world.customer(name=f"C{n}") for n in range(5)]
    for customer in customers[:3]:
        world.client.v1.subscriptions.create({"customer": customer, "items": [{"price": ids["pro_price"]}]})

    def crash(kind: str, n: int) -> None:
        if kind == "subscription":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sweep(world.engine, world.client, page_size=2, now=ts(world.now), on_progress=crash)
    assert len(unlinked(world)) == 3  # mirrored, waiting: two got theirs from the first page
    result = sweep(world.engine, world.client, page_size=2, now=ts(world.now))
    assert result.resumed == ["subscription"]
    assert unlinked(world) == set()
    assert [world.company(c).base for c in customers] == ["pro", "pro", "pro", "free", "free"]
    assert result.linked == 2


def test_the_closing_pass_links_a_customer_to_the_company_holding_its_key(world: World) -> None:
    world.catalog()
    customer = world.customer(name="Keyed")
    with Session(world.engine) as session:
        company, _ = companies.upsert_company(
            session, keys={"stripe_customer_id": customer}, name="Keyed Inc"
        )
        session.commit()
        company_id = company.id
    sweep(world.engine, world.client, resume=False, now=ts(world.now))
    with Session(world.engine) as session:
        row = session.get(StripeCustomer, customer)
        assert row is not None and row.company_id == company_id
        keyed = session.exec(select(CompanyKey).where(col(CompanyKey.value) == customer)).all()
    assert [k.company_id for k in keyed] == [company_id]  # found, not created again


def test_a_subscribed_customer_linked_by_key_gets_its_name_onto_the_company(world: World) -> None:
    """The subscriptions pass links it (the closing pass never sees it): it renames the
    company as the customers pass used to."""
    ids = world.catalog()
    customer = world.customer(name="Keyed")
    world.client.v1.subscriptions.create({"customer": customer, "items": [{"price": ids["pro_price"]}]})
    with Session(world.engine) as session:
        companies.upsert_company(session, keys={"stripe_customer_id": customer}, name="Keyed Inc")
        session.commit()
    sweep(world.engine, world.client, resume=False, now=ts(world.now))
    company = world.company(customer)
    with Session(world.engine) as session:
        row = session.get(Company, company.id)
        assert row is not None and row.name == "Keyed"
    assert company.base == "pro"


def test_a_failed_sweep_still_leaves_full_planner_statistics(
    pg_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sweep's own refreshes sample small; the closing one, with the configured target,
    runs even when the sweep stops early (else the coarse statistics would stay until
    autovacuum's next ANALYZE)."""
    from syncd.stripe_sync import planner_stats

    refreshes: list[bool] = []
    original = planner_stats.PlannerStats.refresh

    def recorded(self: planner_stats.PlannerStats, *, sampled: bool = False) -> None:
        refreshes.append(sampled)
        original(self, sampled=sampled)

    monkeypatch.setattr(planner_stats.PlannerStats, "refresh", recorded)
    monkeypatch.setattr(planner_stats, "FIRST", 2)
    ids = pg_world.catalog()
    for n in range(4):
        customer = pg_world.customer(name=f"C{n}")
        pg_world.client.v1.subscriptions.create(
            {"customer": customer, "items": [{"price": ids["pro_price"]}]}
        )

    def crash(kind: str, n: int) -> None:
        if kind == "subscription":
            raise RuntimeError("listing failed")

    with pytest.raises(RuntimeError):
        sweep(pg_world.engine, pg_world.client, page_size=2, now=ts(pg_world.now), on_progress=crash)
    assert True in refreshes  # the customers pass refreshed, sampled
    assert refreshes[-1] is False  # and the sweep closed with a full refresh although it failed
    assert refreshes.count(False) == 1  # once


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_backfill_names_companies_by_name_then_email_then_description(
    backend: str, world: World, pg_world: World
) -> None:
    """Only the naming fields are read back for a page's customers (not their whole objects):
    the first set one names the company, blank ones skipped, as for a webhook's customer."""
    world = world if backend == "sqlite" else pg_world
    ids = world.catalog()
    v1 = world.client.v1
    named = world.customer(name="  Named Co  ")
    by_email = v1.customers.create({"name": "   ", "email": "ops@mail.example"}).id
    by_description = v1.customers.create({"description": "Described Ltd"}).id
    nameless = v1.customers.create({}).id
    for customer in (named, by_email):  # one subscribed (subscriptions pass), one not (closing pass)
        v1.subscriptions.create({"customer": customer, "items": [{"price": ids["pro_price"]}]})
    sweep(world.engine, world.client, resume=False, now=ts(world.now))
    with Session(world.engine) as session:
        names = {
            customer: session.get(Company, world.company(customer).id).name  # type: ignore[union-attr]
            for customer in (named, by_email, by_description, nameless)
        }
    assert names == {
        named: "Named Co",
        by_email: "ops@mail.example",
        by_description: "Described Ltd",
        nameless: "",
    }
