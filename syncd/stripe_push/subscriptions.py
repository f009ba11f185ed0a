"""Migrated subscriptions: companies moved to a new plan version get its price in Stripe.

State-based and therefore durable: a company whose ``CompanyPlan`` points at a version but
whose Stripe item still carries a price of another version of the same plan is swapped to
the same-interval price of its version (``proration_behavior`` from the catalog settings or
the caller). Grandfathered companies (excluded or ``migration = "leave"``) still point at the
old version, so nothing is planned for them. Whatever a crash interrupts, the next push (the
CLI after ``catalog apply``, or the scheduled push job) plans it again; ``reconcile --verify``
reports it meanwhile.
"""

from __future__ import annotations

import stripe
from sqlmodel import Session, col, select

from ..models import CatalogSettingsRow, CompanyPlan, Plan, PlanPrice, PlanVersion
from ..stripe_api import METADATA_ORIGIN_KEY, idempotency_key
from .catalog import ORIGIN, Op

PRORATION_BEHAVIORS = ("create_prorations", "always_invoice", "none")


def default_proration(session: Session) -> str:
    row = session.get(CatalogSettingsRow, 1)
    return row.proration_behavior if row is not None else "create_prorations"


def plan_swaps(session: Session, proration_behavior: str | None = None) -> list[Op]:
    behavior = proration_behavior or default_proration(session)
    if behavior not in PRORATION_BEHAVIORS:
        raise ValueError(f"proration_behavior must be one of {', '.join(PRORATION_BEHAVIORS)}")
    prices = session.exec(select(PlanPrice, PlanVersion).join(PlanVersion)).all()
    by_stripe = {p.stripe_price_id: (p, v) for p, v in prices if p.stripe_price_id}
    by_version: dict[tuple[str, str, str], PlanPrice] = {
        (p.plan_version_id, p.interval, p.currency): p for p, _ in prices if p.active
    }
    plans = {p.id: p for p in session.exec(select(Plan)).all()}
    ops: list[Op] = []
    rows = session.exec(
        select(CompanyPlan)
        .where(col(CompanyPlan.stripe_subscription_item_id).is_not(None))
        .order_by(col(CompanyPlan.company_id), col(CompanyPlan.plan_id))
    ).all()
    for cp in rows:
        current = by_stripe.get(cp.stripe_price_id or "")
        if current is None:
            continue  # not a price syncd manages
        old_price, old_version = current
        if old_version.id == cp.plan_version_id or old_version.plan_id != cp.plan_id:
            continue
        target = by_version.get((cp.plan_version_id, old_price.interval, old_price.currency))
        version = session.get(PlanVersion, cp.plan_version_id)
        if target is None or version is None or version.status != "published":
            continue
        ops.append(_swap(cp, plans[cp.plan_id], old_version, version, target, behavior))
    return ops


def _swap(
    cp: CompanyPlan, plan: Plan, old: PlanVersion, new: PlanVersion, target: PlanPrice, behavior: str
) -> Op:
    assert cp.stripe_subscription_id and cp.stripe_subscription_item_id
    sub_id, item_id, row_id = cp.stripe_subscription_id, cp.stripe_subscription_item_id, cp.id
    # In a dry run the new version's price may not exist yet; the push plans swaps again
    # after creating prices, so a real run always has the id.
    known = target.stripe_price_id is not None
    price_id = target.stripe_price_id or "(new price)"
    params = {
        "items": [{"id": item_id, "price": price_id}],
        "proration_behavior": behavior,
        "metadata": {
            METADATA_ORIGIN_KEY: ORIGIN,
            "syncd_plan": plan.key,
            "syncd_plan_version": str(new.version),
        },
    }
    key = idempotency_key("swap", row_id, price_id, behavior)

    def run(client: stripe.StripeClient, session: Session) -> None:
        if not known:
            raise RuntimeError("swap planned before its price was pushed")
        client.v1.subscriptions.update(sub_id, params, {"idempotency_key": key})  # type: ignore[arg-type]
        row = session.get(CompanyPlan, row_id)
        if row is not None:
            row.stripe_price_id = price_id
            session.add(row)

    return Op(
        "swap",
        f"subscription {sub_id} ({plan.key})",
        f"v{old.version} -> v{new.version} price {price_id}, proration {behavior}",
        run,
    )
