"""Migrated subscriptions: companies moved to a new plan version get its price in Stripe.

Two sources, merged per company plan:

* the outbox rows ``catalog apply`` writes when it migrates companies (:mod:`.outbox`): the
  durable intent, which still holds if an inbound webhook re-mapped the company from its old
  Stripe price before the push ran (the swap then also puts the company back on the version
  it was migrated to);
* the state: a ``CompanyPlan`` pointing at a version while its Stripe item carries a price of
  another version of the same plan.

The item is swapped to the same-interval price of the target version with the chosen
``proration_behavior`` (``create_prorations`` | ``always_invoice`` | ``none``; default from the
catalog settings). Grandfathered companies (excluded, or ``migration = "leave"``) have neither
an outbox row nor a mismatch, so nothing is planned for them. A crash before or during the
push leaves the rows pending: the next push (CLI, scheduled job, ``reconcile --repair``) does
it, and ``reconcile --verify`` reports it meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass

import stripe
from sqlmodel import Session, col, select

from ..models import CatalogSettingsRow, CompanyPlan, OutboxMessage, Plan, PlanPrice, PlanVersion, utcnow
from ..services.changes import entitlements_changed
from ..stripe_api import METADATA_ORIGIN_KEY, idempotency_key
from .catalog import ORIGIN, Op
from .outbox import pending

PRORATION_BEHAVIORS = ("create_prorations", "always_invoice", "none")


def default_proration(session: Session) -> str:
    row = session.get(CatalogSettingsRow, 1)
    return row.proration_behavior if row is not None else "create_prorations"


@dataclass(frozen=True, slots=True)
class _Swap:
    row_id: str
    company_id: str
    sub_id: str
    item_id: str
    plan_key: str
    old_version: int
    new_version: PlanVersion
    price_id: str | None  # None in a dry run before the version's prices are pushed
    outbox_id: int | None


class _Prices:
    def __init__(self, session: Session) -> None:
        rows = session.exec(select(PlanPrice, PlanVersion).join(PlanVersion)).all()
        self.by_stripe = {p.stripe_price_id: (p, v) for p, v in rows if p.stripe_price_id}
        self.by_version = {(p.plan_version_id, p.interval, p.currency): p for p, _ in rows if p.active}

    def target(self, current: str | None, version_id: str) -> tuple[PlanVersion, PlanPrice] | None:
        """(version of the current price, target price) when the item must move."""
        found = self.by_stripe.get(current or "")
        if found is None:
            return None  # not a price syncd manages
        price, version = found
        if version.id == version_id:
            return None
        target = self.by_version.get((version_id, price.interval, price.currency))
        return (version, target) if target is not None else None


def plan_swaps(session: Session, proration_behavior: str | None = None) -> list[Op]:
    behavior = proration_behavior or default_proration(session)
    if behavior not in PRORATION_BEHAVIORS:
        raise ValueError(f"proration_behavior must be one of {', '.join(PRORATION_BEHAVIORS)}")
    prices = _Prices(session)
    swaps: dict[str, _Swap] = {}
    done: list[OutboxMessage] = []
    for message in pending(session):
        payload = message.payload
        cp = session.exec(
            select(CompanyPlan).where(
                col(CompanyPlan.company_id) == payload["company_id"],
                col(CompanyPlan.plan_id) == payload["plan_id"],
            )
        ).first()
        version = session.get(PlanVersion, payload["version_id"])
        swap = (
            _swap_for(session, cp, version, prices, message.id)
            if cp is not None and version is not None
            else None
        )
        if swap is None:
            done.append(message)  # nothing (left) to do: the plan was dropped or already moved
        else:
            swaps[swap.row_id] = swap
    rows = session.exec(
        select(CompanyPlan)
        .where(col(CompanyPlan.stripe_subscription_item_id).is_not(None))
        .order_by(col(CompanyPlan.company_id), col(CompanyPlan.plan_id))
    ).all()
    for cp in rows:
        version = session.get(PlanVersion, cp.plan_version_id)
        swap = _swap_for(session, cp, version, prices, None) if version is not None else None
        if swap is not None and swap.row_id not in swaps:
            swaps[swap.row_id] = swap
    ops = [_op(s, behavior) for s in sorted(swaps.values(), key=lambda s: (s.company_id, s.plan_key))]
    if done:
        ops.insert(0, _close(done))
    return ops


def _swap_for(
    session: Session, cp: CompanyPlan, version: PlanVersion, prices: _Prices, outbox_id: int | None
) -> _Swap | None:
    if not (cp.stripe_subscription_id and cp.stripe_subscription_item_id) or version.status != "published":
        return None
    found = prices.target(cp.stripe_price_id, version.id)
    if found is None:
        return None
    old_version, target = found
    if old_version.plan_id != cp.plan_id:
        return None
    return _Swap(
        cp.id,
        cp.company_id,
        cp.stripe_subscription_id,
        cp.stripe_subscription_item_id,
        plan.key if (plan := session.get(Plan, cp.plan_id)) is not None else cp.plan_id,
        old_version.version,
        version,
        target.stripe_price_id,
        outbox_id,
    )


def _op(swap: _Swap, behavior: str) -> Op:
    price_id = swap.price_id or "(new price)"
    version_id, version = swap.new_version.id, swap.new_version.version
    params = {
        "items": [{"id": swap.item_id, "price": price_id}],
        "proration_behavior": behavior,
        "metadata": {
            METADATA_ORIGIN_KEY: ORIGIN,
            "syncd_plan": swap.plan_key,
            "syncd_plan_version": str(version),
        },
    }
    key = idempotency_key("swap", swap.row_id, price_id, behavior)

    def run(client: stripe.StripeClient, session: Session) -> None:
        if swap.price_id is None:
            raise RuntimeError("swap planned before its price was pushed")
        message = session.get(OutboxMessage, swap.outbox_id) if swap.outbox_id is not None else None
        try:
            client.v1.subscriptions.update(swap.sub_id, params, {"idempotency_key": key})  # type: ignore[arg-type]
        except stripe.StripeError as exc:
            if message is not None:
                message.attempts += 1
                message.last_error = str(exc)[:2000]
                session.add(message)
                session.commit()
            raise
        row = session.get(CompanyPlan, swap.row_id)
        if row is not None:
            row.stripe_price_id = swap.price_id
            if row.plan_version_id != version_id:
                # An inbound re-map moved it back meanwhile: the migration stands.
                row.plan_version_id = version_id
                row.updated_at = utcnow()
                entitlements_changed(session, [row.company_id])
            session.add(row)
        if message is not None:
            message.status, message.delivered_at = "delivered", utcnow()
            message.attempts += 1
            session.add(message)

    return Op(
        "swap",
        f"subscription {swap.sub_id} ({swap.plan_key})",
        f"v{swap.old_version} -> v{version} price {price_id}, proration {behavior}",
        run,
    )


def _close(messages: list[OutboxMessage]) -> Op:
    ids = [m.id for m in messages]

    def run(client: stripe.StripeClient, session: Session) -> None:
        for message in session.exec(select(OutboxMessage).where(col(OutboxMessage.id).in_(ids))).all():
            message.status, message.delivered_at = "delivered", utcnow()
            session.add(message)

    return Op("close", f"{len(ids)} migration record(s)", "nothing left to push", run)
