"""Companies for many Stripe customers at once (a webhook batch, a sweep page).

The same rows ``upsert_company`` + ``assign_plan_on_creation`` write for one company, written
for all the customers of a batch with one statement per table: ``company``, ``company_key``,
the initial plan's ``company_plan`` and ``plan_change`` rows, and ``audit_log``. Domain events
and entitlement changes go through :mod:`syncd.services.changes` as always. Anything unusual
(the initial plan grants credits, no published version) is left to the per-customer services.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from sqlalchemy import Table, bindparam, update
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from .. import bulk
from ..db import any_of, one_of, pipeline
from ..models import (
    CatalogSettingsRow,
    Company,
    CompanyKey,
    PlanCreditGrant,
    StripeCustomer,
    utcnow,
)
from ..services.changes import entitlements_changed, record_event
from ..services.company_plans import _classify, published_version
from . import rows
from .mapping import CUSTOMER_KEY, STRIPE, CatalogCache, customer_name, ensure_company
from .mirror_bulk import stripe_data

CUSTOMERS: Table = StripeCustomer.__table__  # type: ignore[attr-defined]


@dataclass(slots=True)
class Customers:
    """A batch's customers as one query finds them: their mirror rows and linked companies."""

    mirrors: dict[str, tuple[str | None, str | None, bool]] = field(default_factory=dict)
    """customer -> (company id column, the name its data gives, deleted) of its mirror row"""
    linked: dict[str, str] = field(default_factory=dict)
    """customer -> the existing company its mirror row names"""
    names: dict[str, str] = field(default_factory=dict)
    """company -> its current name (the linked ones, and those created for the batch)"""
    created: set[str] = field(default_factory=set)
    """companies :func:`ensure_companies` created (not yet committed: no other writer sees them)"""


def load_customers(session: Session, customer_ids: Collection[str]) -> Customers:
    """The mirror rows of ``customer_ids`` and the companies they name (one query)."""
    found = Customers()
    if not customer_ids:
        return found
    query = _customers_query(session.get_bind().dialect.name)
    rows_found = session.execute(query, {"ids": sorted(set(customer_ids))}).all()
    for stripe_id, column, data, deleted, company_id, name in rows_found:
        found.mirrors[stripe_id] = (column, customer_name(data), deleted)
        if company_id is not None:
            found.linked[stripe_id] = company_id
            found.names[company_id] = name
    return found


@cache
def _customers_query(dialect: str) -> Any:
    company = rows.COMPANY
    return (
        sa_select(
            CUSTOMERS.c.stripe_id,
            CUSTOMERS.c.company_id,
            # Parsed here by orjson (1-2 µs a customer): three ``->>`` on the server parse the
            # object three times (~9 µs), and only the name is kept.
            stripe_data(CUSTOMERS),
            CUSTOMERS.c.deleted,
            company.c.id,
            company.c.name,
        )
        .outerjoin(company, company.c.id == CUSTOMERS.c.company_id)
        .where(any_of(dialect, CUSTOMERS.c.stripe_id, "ids"))
    )


def ensure_companies(
    session: Session,
    customer_ids: Sequence[str],
    catalog: CatalogCache,
    customers: Customers,
    *,
    billed: Collection[str] = (),
) -> dict[str, str]:
    """Give every listed customer its company (found by key or created); returns customer ->
    company for all of them. ``customers``: :func:`load_customers` of them, read after the
    batch's mirror writes. ``billed``: customers whose subscriptions grant a base plan, to be
    mapped in the same transaction: a company created for one starts without the initial
    plan (the mapping gives it its billing plan, not the initial plan and then a move)."""
    companies = {cid: customers.linked[cid] for cid in customer_ids if cid in customers.linked}
    todo = [cid for cid in dict.fromkeys(customer_ids) if cid not in companies]
    if not todo:
        return companies
    mirrors = customers.mirrors
    keyed = dict(
        session.exec(
            select(CompanyKey.value, CompanyKey.company_id).where(
                col(CompanyKey.key) == CUSTOMER_KEY, one_of(session, col(CompanyKey.value), todo)
            )
        ).all()
    )
    missing = [cid for cid in todo if cid not in keyed]
    names = {cid: (mirrors[cid][1] if cid in mirrors else None) for cid in missing}
    pending = rows.PendingWrites()
    created = _create(session, missing, names, catalog, pending, billed)
    customers.names.update((company_id, names.get(cid) or "") for cid, company_id in created.items())
    customers.created.update(created.values())
    keyed.update(created)
    linked_by_service: set[str] = set()
    for cid in missing:
        if cid not in keyed:  # bulk creation declined (e.g. initial plan credits): the service
            keyed[cid] = ensure_company(session, cid, name=names.get(cid))
            linked_by_service.add(cid)  # ensure_company linked its mirror row
    links = [
        {"stripe_id": cid, "company_id": keyed[cid]}
        for cid in todo
        if cid in mirrors and cid in keyed and cid not in linked_by_service and mirrors[cid][0] != keyed[cid]
    ]
    with pipeline(session):  # the new companies and their links: one round trip
        pending.send(session)
        if links and bulk.supported(session):
            bulk.update_rows(session, CUSTOMERS, "stripe_id", links)
        elif links:
            session.execute(
                update(CUSTOMERS)
                .where(CUSTOMERS.c.stripe_id == bindparam("b_stripe_id"))
                .values(company_id=bindparam("b_company_id")),
                [{"b_stripe_id": link["stripe_id"], "b_company_id": link["company_id"]} for link in links],
            )
    companies.update((cid, keyed[cid]) for cid in todo if cid in keyed)
    return companies


def _create(
    session: Session,
    customer_ids: list[str],
    names: Mapping[str, str | None],
    catalog: CatalogCache,
    pending: rows.PendingWrites,
    billed: Collection[str] = (),
) -> dict[str, str]:
    """The companies' rows, queued in ``pending`` (the caller sends them); {} when the
    per-customer services must create them instead. ``billed`` customers' companies get no
    initial plan."""
    if not customer_ids:
        return {}
    initial, version_id = _initial_plan(session, catalog) if set(customer_ids) - set(billed) else (None, None)
    if initial is not None and version_id is None:
        return {}  # the service raises a proper error for this: let the per-customer path run
    if version_id is not None and catalog.credits[version_id]:
        return {}  # initial plan credits: issued by the per-customer path (sync_plan_grants)
    now = utcnow()
    companies = [
        pending.insert(rows.COMPANY, rows.company_row(names.get(cid) or "", now)) for cid in customer_ids
    ]
    for company, cid in zip(companies, customer_ids, strict=True):
        pending.insert(rows.COMPANY_KEY, {"company_id": company["id"], "key": CUSTOMER_KEY, "value": cid})
        pending.insert(
            rows.AUDIT_LOG,
            rows.audit_row(STRIPE, "company.created", company["id"], None, rows.snapshot(company), now),
        )
    if initial is not None and version_id is not None:
        if (None, version_id) not in catalog.classified:
            catalog.classified[(None, version_id)] = _classify(session, None, version_id, True, [], [])
        action = catalog.classified[(None, version_id)]
        for company, cid in zip(companies, customer_ids, strict=True):
            if cid in billed:
                continue
            company_id = company["id"]
            pending.insert(
                rows.COMPANY_PLAN, rows.plan_row(company_id, initial, version_id, now, source="initial")
            )
            change = pending.insert(
                rows.PLAN_CHANGE,
                rows.plan_change_row(
                    company_id,
                    "company_upsert",
                    STRIPE,
                    now,
                    base_plan_action="initial",
                    subscription_change_action=action,
                    base_plan_id=initial,
                    base_plan_version_id=version_id,
                ),
            )
            after = rows.snapshot(change)
            pending.insert(
                rows.AUDIT_LOG, rows.audit_row(STRIPE, "company.plan_changed", company_id, None, after, now)
            )
            record_event(
                session,
                "company.plan_changed",
                company_id,
                {
                    "plan_change": after,
                    "plan_change_id": change["id"],
                    "reason": "company_upsert",
                    "base_plan_id": initial,
                    "previous_base_plan_id": None,
                    "add_ons_added": [],
                    "add_ons_removed": [],
                },
            )
    ids = [c["id"] for c in companies]
    entitlements_changed(session, ids)
    return dict(zip(customer_ids, ids, strict=True))


def _initial_plan(session: Session, catalog: CatalogCache) -> tuple[str | None, str | None]:
    """(plan, published version) new companies start on, read once per catalog cache; the
    version's credit grants are looked up into ``catalog.credits`` too."""
    if catalog.initial is None:
        settings = session.get(CatalogSettingsRow, 1)
        plan_id = settings.initial_plan_id if settings is not None else None
        published = published_version(session, plan_id) if plan_id is not None else None
        catalog.initial = (plan_id, published.id if published is not None else None)
    version_id = catalog.initial[1]
    if version_id is not None and version_id not in catalog.credits:
        found = session.exec(
            select(PlanCreditGrant.id).where(col(PlanCreditGrant.plan_version_id) == version_id)
        ).first()
        catalog.credits[version_id] = found is not None
    return catalog.initial


def name_companies(
    session: Session, customer_ids: Sequence[str], companies: Mapping[str, str], customers: Customers
) -> int:
    """``apply_customer`` for many customers whose companies exist (``companies``, from
    :func:`ensure_companies`): rename each company whose customer's name changed. Returns
    how many were renamed."""
    if not customer_ids:
        return 0
    unknown = [
        companies[cid] for cid in customer_ids if cid in companies and companies[cid] not in customers.names
    ]
    if unknown:  # found by key rather than through the mirror row: not read yet
        customers.names.update(
            session.exec(
                select(Company.id, Company.name).where(one_of(session, col(Company.id), unknown))
            ).all()
        )
    pending = rows.PendingWrites()
    now = utcnow()
    renamed = 0
    for cid in dict.fromkeys(customer_ids):
        company_id, mirror_row = companies.get(cid), customers.mirrors.get(cid)
        if company_id is None or mirror_row is None or mirror_row[2]:  # no company, or deleted
            continue
        name = mirror_row[1]
        if name and company_id in customers.names and customers.names[company_id] != name:
            pending.update(rows.COMPANY, company_id, {"name": name, "updated_at": now})
            customers.names[company_id] = name
            renamed += 1
    if pending:
        pending.write(session)
    return renamed
