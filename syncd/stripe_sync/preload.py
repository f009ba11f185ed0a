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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import case, literal, null, union_all
from sqlalchemy import select as sa_select
from sqlmodel import Session, col

from ..db import any_of
from ..models import CreditGrant, ScheduledDowngrade
from . import rows
from .companies_bulk import Customers, ensure_companies
from .locks import lock_companies
from .mapping import MappingContext, claims_from, expected_plans, sync_company
from .mirror_bulk import State, stripe_data
from .normalize import SubscriptionView, subscription_view

Subscriptions = dict[str, list[tuple[SubscriptionView, int | None]]]


def load_subscriptions(
    session: Session, customer_ids: Sequence[str], written: Sequence[State] = ()
) -> Subscriptions:
    """The customers' live mirrored subscriptions (as views, with their past_due start).
    ``written``: subscription states this transaction has just stored, whose ``data`` is
    therefore not read back (nor parsed again)."""
    wanted = sorted(set(customer_ids))
    found: Subscriptions = {cid: [] for cid in wanted}
    if not wanted:
        return found
    fresh = {s.stripe_id: s for s in written if s.view is not None}
    query = _queries(session.get_bind().dialect.name).subscriptions
    params = {"ids": wanted, "fresh": sorted(fresh)}
    for customer_id, stripe_id, data, past_due_since in session.execute(query, params).all():
        if customer_id is None:
            continue
        state = fresh.get(stripe_id)
        if state is not None and state.view is not None:
            found[customer_id].append((state.view, state.past_due_since))
        else:
            found[customer_id].append((subscription_view(data), past_due_since))
    return found


def billed_customers(session: Session, ctx: MappingContext, subscriptions: Subscriptions) -> set[str]:
    """The customers whose subscriptions grant a base plan now (``sync_company`` will give
    their companies that plan): a company created for one needs no initial plan first."""
    return {
        customer_id
        for customer_id, subs in subscriptions.items()
        if subs and expected_plans(claims_from(session, subs, ctx))[0] is not None
    }


def billed_companies(
    session: Session,
    ctx: MappingContext,
    customer_ids: Sequence[str],
    customers: Customers,
    subscriptions: Subscriptions | None,
) -> dict[str, str]:
    """``ensure_companies`` for the customers, then their companies' locks: customers whose
    ``subscriptions`` (read under their locks; None: not known yet) grant a base plan get a
    new company straight on it, and companies this transaction created need no lock."""
    billed = billed_customers(session, ctx, subscriptions) if subscriptions else set()
    companies = ensure_companies(session, customer_ids, ctx.catalog, customers, billed=billed)
    lock_companies(session, companies.values(), created=customers.created)
    return companies


def preload(
    session: Session,
    ctx: MappingContext,
    customer_ids: Sequence[str],
    companies: Mapping[str, str],
    subscriptions: Subscriptions | None = None,
) -> None:
    """Fill ``ctx``'s per-customer caches for ``customer_ids`` (one query per table), their
    companies given by ``companies`` (customer -> company, from ``ensure_companies``);
    ``subscriptions``: :func:`load_subscriptions` of them, if the caller has read them."""
    if not customer_ids:
        return
    wanted = sorted(set(customer_ids))
    if subscriptions is None or not subscriptions.keys() >= set(wanted):
        subscriptions = load_subscriptions(session, wanted)
    ctx._subscriptions.update((cid, subscriptions[cid]) for cid in wanted)

    # Customers without a company in ``companies`` are left to ``ensure_company``.
    linked = {cid: companies[cid] for cid in wanted if cid in companies}
    ctx._company_of.update(linked)
    existing = set(linked.values())
    if not existing:
        return
    ids = sorted(existing)
    queries = _queries(session.get_bind().dialect.name)
    plans: dict[str, list[Any]] = {cid: [] for cid in ids}
    for row in session.execute(
        queries.plans, {"ids": ids}
    ).all():  # plain rows: sync_company writes through ctx.pending
        plans[row.company_id].append(row)
    ctx._company_plans.update(plans)

    ctx._known.update(ids)
    # Pending downgrades and plan credit grants: one query for both.
    for what, company_id in session.execute(queries.downgrades_and_grants, {"ids": ids}).all():
        (ctx._pending_downgrades if what == "downgrade" else ctx._plan_grants).add(company_id)


@dataclass(frozen=True)
class _Queries:
    subscriptions: Any
    plans: Any
    downgrades_and_grants: Any


@cache
def _queries(dialect: str) -> _Queries:
    """The preload statements, built once per dialect (the ids come at execution)."""
    subs = rows.SUBSCRIPTIONS
    plans = rows.COMPANY_PLAN
    downgrades = sa_select(literal("downgrade"), col(ScheduledDowngrade.company_id)).where(
        any_of(dialect, col(ScheduledDowngrade.company_id), "ids"),
        col(ScheduledDowngrade.status) == "pending",
    )
    grants = sa_select(literal("grant"), col(CreditGrant.company_id)).where(
        any_of(dialect, col(CreditGrant.company_id), "ids"),
        col(CreditGrant.reason).in_(("plan", "rollover")),
    )
    return _Queries(
        subscriptions=sa_select(
            subs.c.customer_id,
            subs.c.stripe_id,
            # the rows the caller has just written come back without their data
            case((any_of(dialect, subs.c.stripe_id, "fresh"), null()), else_=stripe_data(subs)),
            subs.c.past_due_since,
        ).where(any_of(dialect, subs.c.customer_id, "ids"), subs.c.deleted.is_(False)),
        plans=sa_select(plans)
        .where(any_of(dialect, plans.c.company_id, "ids"))
        .order_by(plans.c.created_at, plans.c.id),
        downgrades_and_grants=union_all(downgrades, grants),
    )


def sync_companies(
    session: Session,
    ctx: MappingContext,
    customer_ids: Sequence[str],
    companies: Mapping[str, str],
    *,
    write: bool = True,
    subscriptions: Subscriptions | None = None,
) -> int:
    """``sync_company`` for each customer, reads preloaded and one flush at the end; returns
    how many companies changed. With ``write=False`` the plain-row writes stay queued in
    ``ctx.pending`` for the caller to send with its own (one round trip for all).
    ``subscriptions``: :func:`load_subscriptions` of the customers, if already read."""
    preload(session, ctx, customer_ids, companies, subscriptions)
    ctx.defer_flush = True
    changed = 0
    try:
        for customer_id in customer_ids:
            changed += sync_company(session, customer_id, ctx)
        if write:
            ctx.pending.write(session)
    finally:
        ctx.defer_flush = False
    session.flush()
    return changed
