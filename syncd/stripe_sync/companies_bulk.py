"""Companies for many Stripe customers at once (a webhook batch, a sweep page).

The same rows ``upsert_company`` + ``assign_plan_on_creation`` write for one company, written
for all the customers of a batch with one statement per table: ``company``, ``company_key``,
the initial plan's ``company_plan`` and ``plan_change`` rows, and ``audit_log``. Domain events
and entitlement changes go through :mod:`syncd.services.changes` as always. Anything unusual
(the initial plan grants credits, no published version) is left to the per-customer services.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy import insert
from sqlmodel import Session, col, select

from ..models import (
    AuditLog,
    CatalogSettingsRow,
    Company,
    CompanyKey,
    CompanyPlan,
    PlanChange,
    PlanCreditGrant,
    StripeCustomer,
    utcnow,
)
from ..services.audit import snapshot
from ..services.changes import entitlements_changed, record_event
from ..services.company_plans import _classify, published_version
from .mapping import CUSTOMER_KEY, STRIPE, customer_name


def ensure_companies(session: Session, customer_ids: Sequence[str]) -> int:
    """Give every listed customer its company (found by key or created); returns how many
    were created. Customers whose mirror row already names an existing company are skipped."""
    mirrors = {
        m.stripe_id: m
        for m in session.exec(
            select(StripeCustomer).where(col(StripeCustomer.stripe_id).in_(sorted(set(customer_ids))))
        ).all()
    }
    have = {
        c.id
        for c in session.exec(
            select(Company).where(
                col(Company.id).in_(sorted({m.company_id for m in mirrors.values() if m.company_id}))
            )
        ).all()
    }
    todo = [
        cid for cid in dict.fromkeys(customer_ids) if not (cid in mirrors and mirrors[cid].company_id in have)
    ]
    if not todo:
        return 0
    keyed = dict(
        session.exec(
            select(CompanyKey.value, CompanyKey.company_id).where(
                col(CompanyKey.key) == CUSTOMER_KEY, col(CompanyKey.value).in_(todo)
            )
        ).all()
    )
    missing = [cid for cid in todo if cid not in keyed]
    names = {cid: (customer_name(mirrors[cid].data) if cid in mirrors else None) for cid in missing}
    keyed.update(_create(session, missing, names))
    for cid in todo:
        mirror = mirrors.get(cid)
        if mirror is not None and cid in keyed and mirror.company_id != keyed[cid]:
            mirror.company_id = keyed[cid]
            session.add(mirror)
    return len(missing)


def _create(session: Session, customer_ids: list[str], names: Mapping[str, str | None]) -> dict[str, str]:
    if not customer_ids:
        return {}
    settings = session.get(CatalogSettingsRow, 1)
    initial = settings.initial_plan_id if settings is not None else None
    version = published_version(session, initial) if initial is not None else None
    if initial is not None and version is None:
        return {}  # the service raises a proper error for this: let the per-customer path run
    if (
        version is not None
        and session.exec(
            select(PlanCreditGrant.id).where(col(PlanCreditGrant.plan_version_id) == version.id)
        ).first()
    ):
        return {}  # initial plan credits: issued by the per-customer path (sync_plan_grants)
    now = utcnow()
    companies = [Company(name=names.get(cid) or "", created_at=now, updated_at=now) for cid in customer_ids]
    session.add_all(companies)
    session.add_all(
        CompanyKey(company_id=c.id, key=CUSTOMER_KEY, value=cid)
        for c, cid in zip(companies, customer_ids, strict=True)
    )
    audit: list[dict[str, object]] = []
    if initial is not None and version is not None:
        action = _classify(session, None, version.id, True, [], [])
        for company in companies:
            session.add(
                CompanyPlan(
                    company_id=company.id,
                    plan_id=initial,
                    plan_version_id=version.id,
                    role="base",
                    source="initial",
                    created_at=now,
                    updated_at=now,
                )
            )
            change = PlanChange(
                company_id=company.id,
                action="company_upsert",
                base_plan_action="initial",
                subscription_change_action=action,
                actor_type=STRIPE.actor_type,
                actor=STRIPE.actor,
                base_plan_id=initial,
                base_plan_version_id=version.id,
                add_ons_added=[],
                add_ons_removed=[],
                created_at=now,
            )
            session.add(change)
            after = snapshot(change)
            audit.append(_audit("company.plan_changed", company.id, None, after, now))
            record_event(
                session,
                "company.plan_changed",
                company.id,
                {
                    "plan_change": after,
                    "plan_change_id": change.id,
                    "reason": "company_upsert",
                    "base_plan_id": initial,
                    "previous_base_plan_id": None,
                    "add_ons_added": [],
                    "add_ons_removed": [],
                },
            )
    session.flush()
    audit.extend(_audit("company.created", c.id, None, snapshot(c), now) for c in companies)
    session.execute(insert(AuditLog), audit)
    entitlements_changed(session, [c.id for c in companies])
    return {cid: c.id for c, cid in zip(companies, customer_ids, strict=True)}


def _audit(action: str, company_id: str, before: object, after: object, now: object) -> dict[str, object]:
    return {
        "actor_type": STRIPE.actor_type,
        "actor": STRIPE.actor,
        "action": action,
        "entity_type": "company",
        "entity_id": company_id,
        "before": before,
        "after": after,
        "note": None,
        "created_at": now,
    }
