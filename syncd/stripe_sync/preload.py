"""Everything a batch of customers' mapping reads, loaded with one query per table.

:func:`~.mapping.sync_company` maps one customer; run for each of a batch (a webhook batch, a
sweep page) it would issue its reads customer by customer: the mirror and company rows, the
subscriptions, the plan rows, pending downgrades, plan credit grants. :func:`preload` reads
them for the whole batch at once into the :class:`~.mapping.MappingContext` caches, which
``sync_company`` consumes (each entry once: call right before mapping, with nothing storing
subscriptions or plans in between).

The context also holds the loaded rows strongly: the session's identity map is weak, and a
row dropped from it would be read again on the next ``session.get``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from ..db import one_of
from ..models import Company, CreditGrant, ScheduledDowngrade, StripeCustomer, StripeSubscription
from . import rows
from .mapping import MappingContext, sync_company
from .normalize import SubscriptionView, subscription_view


def preload(session: Session, ctx: MappingContext, customer_ids: Sequence[str]) -> None:
    """Fill ``ctx``'s per-customer caches for ``customer_ids`` (one query per table)."""
    if not customer_ids:
        return
    wanted = sorted(set(customer_ids))
    subscriptions: dict[str, list[tuple[SubscriptionView, int | None]]] = {cid: [] for cid in wanted}
    for customer_id, data, past_due_since in session.exec(
        select(
            StripeSubscription.customer_id, StripeSubscription.data, StripeSubscription.past_due_since
        ).where(
            one_of(session, col(StripeSubscription.customer_id), wanted),
            col(StripeSubscription.deleted).is_(False),
        )
    ).all():
        if customer_id is not None:
            subscriptions[customer_id].append((subscription_view(data), past_due_since))
    ctx._subscriptions.update(subscriptions)

    # Customers whose company is gone or not linked yet are left to ``ensure_company``.
    linked = session.exec(
        select(StripeCustomer.stripe_id, Company.id)
        .join(Company, col(Company.id) == col(StripeCustomer.company_id))
        .where(one_of(session, col(StripeCustomer.stripe_id), wanted))
    ).all()
    ctx._company_of.update(dict(linked))
    existing = {company_id for _, company_id in linked}
    if not existing:
        return
    ids = sorted(existing)
    plans: dict[str, list[Any]] = {cid: [] for cid in ids}
    table = rows.COMPANY_PLAN
    query = (
        sa_select(table)
        .where(one_of(session, table.c.company_id, ids))
        .order_by(table.c.created_at, table.c.id)
    )
    for row in session.execute(query).all():  # plain rows: sync_company writes through ctx.pending
        plans[row.company_id].append(row)
    ctx._company_plans.update(plans)

    ctx._known.update(ids)
    ctx._pending_downgrades.update(
        session.exec(
            select(ScheduledDowngrade.company_id).where(
                one_of(session, col(ScheduledDowngrade.company_id), ids),
                col(ScheduledDowngrade.status) == "pending",
            )
        ).all()
    )
    ctx._plan_grants.update(
        session.exec(
            select(CreditGrant.company_id).where(
                one_of(session, col(CreditGrant.company_id), ids),
                col(CreditGrant.reason).in_(("plan", "rollover")),
            )
        ).all()
    )


def sync_companies(session: Session, ctx: MappingContext, customer_ids: Sequence[str]) -> int:
    """``sync_company`` for each customer, reads preloaded and one flush at the end; returns
    how many companies changed."""
    preload(session, ctx, customer_ids)
    ctx.defer_flush = True
    changed = 0
    try:
        for customer_id in customer_ids:
            changed += sync_company(session, customer_id, ctx)
        ctx.pending.write(session)
    finally:
        ctx.defer_flush = False
    session.flush()
    return changed
