"""Companies for many Stripe customers at once (a webhook batch, a sweep page).

The same rows ``upsert_company`` + ``assign_plan_on_creation`` write for one company, written
for all the customers of a batch with one statement per table: ``company``, ``company_key``,
the initial plan's ``company_plan`` and ``plan_change`` rows, and ``audit_log``. Domain events
and entitlement changes go through :mod:`syncd.services.changes` as always. Anything unusual
(the initial plan grants credits, no published version) is left to the per-customer services.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy import Table, bindparam, update
from sqlmodel import Session, col, select

from ..db import one_of
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

CUSTOMERS: Table = StripeCustomer.__table__  # type: ignore[attr-defined]


def ensure_companies(
    session: Session, customer_ids: Sequence[str], catalog: CatalogCache | None = None
) -> int:
    """Give every listed customer its company (found by key or created); returns how many
    were created. Customers whose mirror row already names an existing company are skipped."""
    linked = dict(
        session.exec(
            select(StripeCustomer.stripe_id, Company.id)
            .join(Company, col(Company.id) == col(StripeCustomer.company_id))
            .where(one_of(session, col(StripeCustomer.stripe_id), set(customer_ids)))
        ).all()
    )
    todo = [cid for cid in dict.fromkeys(customer_ids) if cid not in linked]
    if not todo:
        return 0
    mirrors = {
        stripe_id: (company_id, data)
        for stripe_id, company_id, data in session.exec(
            select(StripeCustomer.stripe_id, StripeCustomer.company_id, StripeCustomer.data).where(
                one_of(session, col(StripeCustomer.stripe_id), todo)
            )
        ).all()
    }
    keyed = dict(
        session.exec(
            select(CompanyKey.value, CompanyKey.company_id).where(
                col(CompanyKey.key) == CUSTOMER_KEY, one_of(session, col(CompanyKey.value), todo)
            )
        ).all()
    )
    missing = [cid for cid in todo if cid not in keyed]
    names = {cid: (customer_name(mirrors[cid][1]) if cid in mirrors else None) for cid in missing}
    keyed.update(_create(session, missing, names, catalog if catalog is not None else CatalogCache()))
    for cid in missing:
        if cid not in keyed:  # bulk creation declined (e.g. initial plan credits): the service
            keyed[cid] = ensure_company(session, cid, name=names.get(cid))
            mirrors.pop(cid, None)  # ensure_company linked its mirror row
    links = [
        {"customer": cid, "company": keyed[cid]}
        for cid in todo
        if cid in mirrors and cid in keyed and mirrors[cid][0] != keyed[cid]
    ]
    if links:
        session.execute(
            update(CUSTOMERS)
            .where(CUSTOMERS.c.stripe_id == bindparam("customer"))
            .values(company_id=bindparam("company")),
            links,
        )
    return len(missing)


def _create(
    session: Session, customer_ids: list[str], names: Mapping[str, str | None], catalog: CatalogCache
) -> dict[str, str]:
    if not customer_ids:
        return {}
    if catalog.initial is None:
        settings = session.get(CatalogSettingsRow, 1)
        plan_id = settings.initial_plan_id if settings is not None else None
        published = published_version(session, plan_id) if plan_id is not None else None
        catalog.initial = (plan_id, published.id if published is not None else None)
    initial, version_id = catalog.initial
    if initial is not None and version_id is None:
        return {}  # the service raises a proper error for this: let the per-customer path run
    if version_id is not None:
        if version_id not in catalog.credits:
            found = session.exec(
                select(PlanCreditGrant.id).where(col(PlanCreditGrant.plan_version_id) == version_id)
            ).first()
            catalog.credits[version_id] = found is not None
        if catalog.credits[version_id]:
            return {}  # initial plan credits: issued by the per-customer path (sync_plan_grants)
    now = utcnow()
    pending = rows.PendingWrites()
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
        for company in companies:
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
    session.flush()  # ORM-pending rows (the mirror) go first, as before
    pending.write(session)
    ids = [c["id"] for c in companies]
    entitlements_changed(session, ids)
    return dict(zip(customer_ids, ids, strict=True))


def name_companies(session: Session, customer_ids: Sequence[str]) -> int:
    """``apply_customer`` for many customers whose companies exist (after
    :func:`ensure_companies`): rename each company whose customer's name changed, reading
    companies and mirrors in one query. Returns how many were renamed."""
    if not customer_ids:
        return 0
    query = (
        select(Company, StripeCustomer.data)
        .join(StripeCustomer, col(StripeCustomer.company_id) == col(Company.id))
        .where(
            one_of(session, col(StripeCustomer.stripe_id), set(customer_ids)),
            col(StripeCustomer.deleted).is_(False),
        )
    )
    renamed = 0
    now = utcnow()
    for company, data in session.exec(query).all():
        name = customer_name(data)
        if name and company.name != name:
            company.name, company.updated_at = name, now
            session.add(company)
            renamed += 1
    return renamed
