"""A priced catalog for push tests and small helpers around the stripe_sync World."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, col, select

from syncd.catalog import apply_catalog, loads
from syncd.db import session_scope
from syncd.models import CompanyPlan, Plan, PlanPrice, PlanVersion
from syncd.stripe_push.push import PushResult, push
from tests.stripe_sync.harness import World

CATALOG = """
[settings]
initial_plan = "free"
fallback_plan = "free"
proration_behavior = "{proration}"

[[features]]
key = "reports"
name = "Reports"
type = "boolean"

[[features]]
key = "api_calls"
name = "API calls"
type = "event"
event = "api_call"

[[plans]]
key = "free"
name = "Free"

[[plans]]
key = "pro"
name = "Pro"
prices = {{ month = {pro_month}, year = {pro_year} }}
migration = "{migration}"
migration_exclude = {exclude}
[plans.entitlements]
reports = {{ type = "boolean", value = true }}
api_calls = {{ type = "numeric", value = 1000, period = "current_month", month_reset = "first_of_month" }}

[[plans]]
key = "boost"
name = "Boost pack"
type = "add_on"
prices = {{ one_time = 900 }}
"""


def catalog(
    world: World,
    *,
    pro_month: int = 4900,
    pro_year: int = 49000,
    migration: str = "leave",
    exclude: list[str] | None = None,
    proration: str = "create_prorations",
) -> None:
    text = CATALOG.format(
        proration=proration,
        pro_month=pro_month,
        pro_year=pro_year,
        migration=migration,
        exclude="[" + ", ".join(f'"{c}"' for c in exclude or []) + "]",
    )
    with session_scope(world.engine) as session:
        apply_catalog(session, loads(text))


def run(world: World, **kwargs: Any) -> PushResult:
    return push(world.engine, world.client, **kwargs)


def stripe_counts(world: World) -> dict[str, int]:
    return {
        "products": len(world.emu.store.all("product")),
        "prices": len(world.emu.store.all("price")),
        "active_prices": sum(1 for p in world.emu.store.all("price") if p["active"]),
    }


def versions(world: World, plan_key: str) -> dict[int, str]:
    with Session(world.engine) as session:
        plan = session.exec(select(Plan).where(col(Plan.key) == plan_key)).one()
        rows = session.exec(select(PlanVersion).where(col(PlanVersion.plan_id) == plan.id)).all()
        return {v.version: v.status for v in rows}


def company_rows(world: World) -> list[CompanyPlan]:
    with Session(world.engine) as session:
        return list(session.exec(select(CompanyPlan)).all())


def price_of(world: World, version: int, interval: str = "month") -> str:
    with Session(world.engine) as session:
        row = session.exec(
            select(PlanPrice)
            .join(PlanVersion)
            .where(col(PlanVersion.version) == version, col(PlanPrice.interval) == interval)
        ).first()
        assert row is not None and row.stripe_price_id
        return row.stripe_price_id


def subscribe(world: World, name: str, price: str) -> tuple[str, str]:
    customer = world.customer(name=name)
    sub = world.client.v1.subscriptions.create({"customer": customer, "items": [{"price": price}]})
    return customer, str(sub.id)


def item_price(world: World, sub_id: str) -> str:
    sub = world.client.v1.subscriptions.retrieve(sub_id)
    return str(sub["items"].data[0].price.id)


def version_of(world: World, customer: str) -> int:
    row = world.company(customer).billing_base
    assert row is not None
    with Session(world.engine) as session:
        version = session.get(PlanVersion, row.plan_version_id)
        assert version is not None
        return version.version
