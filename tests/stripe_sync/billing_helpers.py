"""Helpers for syncd -> Stripe plan-change tests: link local prices to emulator prices (standing
in for ``syncd catalog push``), create companies, run plan changes."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, col, select

from syncd.billing.customers import ensure_customer
from syncd.billing.plan_change import ChangeOutcome, ChangeRequest, change_plan
from syncd.db import session_scope
from syncd.models import Plan, PlanChange, PlanPrice, ScheduledDowngrade
from syncd.services.audit import Actor
from syncd.services.companies import upsert_company
from syncd.services.company_plans import published_version
from syncd.stripe_sync.mapping import ts

from .harness import World


def link_prices(world: World, ids: dict[str, str], extra: dict[str, tuple[str, int]] | None = None) -> None:
    """``PlanPrice.stripe_price_id`` for the harness plans (and ``extra``: key -> (price, amount))."""
    wanted = {k: (ids[f"{k}_price"], None) for k in ("pro", "enterprise", "analytics")}
    wanted.update({k: (p, a) for k, (p, a) in (extra or {}).items()})
    with session_scope(world.engine) as session:
        for key, (price_id, amount) in wanted.items():
            plan = session.exec(select(Plan).where(col(Plan.key) == key)).one()
            version = published_version(session, plan.id)
            assert version is not None
            row = session.exec(
                select(PlanPrice).where(
                    col(PlanPrice.plan_version_id) == version.id, col(PlanPrice.interval) == "month"
                )
            ).first()
            if row is None:
                row = PlanPrice(plan_version_id=version.id, interval="month", amount=amount or 0)
            row.stripe_price_id = price_id
            session.add(row)


def new_company(world: World, name: str = "Acme", pm: str = "pm_card_visa") -> tuple[str, str]:
    """A local company with a Stripe customer (and a payment method); (company id, customer id)."""
    with session_scope(world.engine) as session:
        company, _ = upsert_company(session, keys={"acme_id": name.lower()}, name=name)
        company_id = company.id
    with session_scope(world.engine) as session:
        customer = ensure_customer(session, world.client, company_id)
    world.set_payment_method(customer, pm)
    return company_id, customer


def change(world: World, company_id: str, plan: str, **kwargs: Any) -> ChangeOutcome:
    actor = kwargs.pop("actor", Actor("cli"))
    with session_scope(world.engine) as session:
        return change_plan(
            session,
            world.client,
            company_id,
            ChangeRequest(plan=plan, actor=actor, **kwargs),
            now=ts(world.now),
        )


def plan_changes(world: World, company_id: str) -> list[PlanChange]:
    with Session(world.engine) as session:
        return list(
            session.exec(
                select(PlanChange)
                .where(col(PlanChange.company_id) == company_id)
                .order_by(col(PlanChange.created_at), col(PlanChange.id))
            ).all()
        )


def downgrades(world: World, company_id: str) -> list[ScheduledDowngrade]:
    with Session(world.engine) as session:
        return list(
            session.exec(
                select(ScheduledDowngrade).where(col(ScheduledDowngrade.company_id) == company_id)
            ).all()
        )
