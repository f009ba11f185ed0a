"""Companies: upsert by any key, traits, lookup, listing, deletion."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import exists, or_
from sqlmodel import Session, col, select

from ..exceptions import NotFoundError, ValidationError
from ..models import (
    Company,
    CompanyKey,
    CompanyOverride,
    CompanyPlan,
    PlanEntitlement,
    ScheduledDowngrade,
    utcnow,
)
from . import keys as entity_keys
from .audit import SYSTEM, Actor, record, snapshot
from .changes import entitlements_changed
from .common import FIRST_PAGE, Page, check_name, require, text_match
from .company_plans import assign_plan_on_creation
from .traits import increment_trait, set_traits


def upsert_company(
    session: Session,
    *,
    keys: Mapping[str, str],
    name: str | None = None,
    traits: Mapping[str, Any] | None = None,
    company_id: str | None = None,
    last_seen_at: datetime | None = None,
    remove_keys: Sequence[str] = (),
    prevent_key_remap: bool = False,
    update_only: bool = False,
    base_plan_id: str | None = None,
    actor: Actor = SYSTEM,
) -> tuple[Company, bool]:
    """Create or update the company the keys (or ``company_id``) address; returns (company, created).

    Keys matching two companies raise ConflictError. A new company gets ``base_plan_id``,
    else the catalog's initial plan.
    """
    entity_keys.validate_keys(keys, required=company_id is None)
    check_name(name)
    found = entity_keys.resolve(session, entity_keys.COMPANY_KEYS, keys, company_id)
    created = found is None
    if found is None:
        if update_only:
            raise NotFoundError("no company matches these keys", code="company_not_found")
        company = Company(name=name or "")
        session.add(company)
        session.flush()
        before = None
    else:
        company = require(session, Company, found, "company")
        before = snapshot(company)
    if name is not None:
        company.name = name
    if last_seen_at is not None:
        company.last_seen_at = last_seen_at
    entity_keys.remove_keys(session, entity_keys.COMPANY_KEYS, company.id, remove_keys)
    session.flush()
    entity_keys.set_keys(session, entity_keys.COMPANY_KEYS, company.id, keys, prevent_remap=prevent_key_remap)
    if traits:
        set_traits(session, "company", company.id, traits)
    company.updated_at = utcnow()
    session.add(company)
    session.flush()
    if created:
        assign_plan_on_creation(session, company.id, base_plan_id, actor)
    record(
        session,
        actor,
        "company.created" if created else "company.updated",
        "company",
        company.id,
        before=before,
        after=snapshot(company),
    )
    entitlements_changed(session, [company.id])
    return company, created


def upsert_company_trait(
    session: Session,
    *,
    keys: Mapping[str, str],
    trait: str,
    set_value: Any = None,
    incr: int | None = None,
    update_only: bool = False,
    actor: Actor = SYSTEM,
) -> Company:
    """Set (``set_value``) or increment (``incr``) one trait of the company the keys address."""
    if (set_value is None) == (incr is None):
        raise ValidationError("give exactly one of set and incr", code="invalid_trait_update")
    entity_keys.validate_keys(keys)
    found = entity_keys.resolve(session, entity_keys.COMPANY_KEYS, keys)
    if found is None and update_only:
        raise NotFoundError("no company matches these keys", code="company_not_found")
    if found is None:
        company, _ = upsert_company(session, keys=keys, actor=actor)
    else:
        company = require(session, Company, found, "company")
    if incr is not None:
        increment_trait(session, "company", company.id, trait, incr)
    else:
        set_traits(session, "company", company.id, {trait: set_value})
    company.updated_at = utcnow()
    session.add(company)
    record(
        session, actor, "company.trait_updated", "company", company.id, after={trait: set_value, "incr": incr}
    )
    entitlements_changed(session, [company.id])
    return company


def get_company(session: Session, company_id: str) -> Company:
    return require(session, Company, company_id, "company")


def lookup_company(session: Session, keys: Mapping[str, str]) -> Company:
    company: Company = entity_keys.lookup(session, entity_keys.COMPANY_KEYS, keys)
    return company


def delete_company(session: Session, company_id: str, *, actor: Actor = SYSTEM) -> None:
    """Delete the company and everything that hangs off it (keys, traits, plans, usage, ...)."""
    company = require(session, Company, company_id, "company")
    before = snapshot(company)
    session.delete(company)
    session.flush()
    record(session, actor, "company.deleted", "company", company_id, before=before)
    entitlements_changed(session, [company_id])


def list_companies(
    session: Session,
    *,
    ids: Sequence[str] | None = None,
    plan_ids: Sequence[str] | None = None,
    plan_version_ids: Sequence[str] | None = None,
    q: str | None = None,
    without_plan: bool | None = None,
    with_subscription: bool | None = None,
    without_subscription: bool | None = None,
    has_scheduled_downgrade: bool | None = None,
    with_entitlement_for: str | None = None,
    without_feature_override_for: str | None = None,
    page: Page = FIRST_PAGE,
) -> list[Company]:
    """Companies, newest first, filtered as Schematic's ``GET /companies``."""
    query = select(Company)
    cp = CompanyPlan
    if ids is not None:
        query = query.where(col(Company.id).in_(ids))
    if plan_ids is not None:
        query = query.where(exists().where(col(cp.company_id) == Company.id, col(cp.plan_id).in_(plan_ids)))
    if plan_version_ids is not None:
        query = query.where(
            exists().where(col(cp.company_id) == Company.id, col(cp.plan_version_id).in_(plan_version_ids))
        )
    if without_plan:
        query = query.where(~exists().where(col(cp.company_id) == Company.id, col(cp.role) == "base"))
    subscribed = exists().where(col(cp.company_id) == Company.id, col(cp.stripe_subscription_id).is_not(None))
    if with_subscription:
        query = query.where(subscribed)
    if without_subscription:
        query = query.where(~subscribed)
    if has_scheduled_downgrade is not None:
        pending = exists().where(
            col(ScheduledDowngrade.company_id) == Company.id, col(ScheduledDowngrade.status) == "pending"
        )
        query = query.where(pending if has_scheduled_downgrade else ~pending)
    if with_entitlement_for is not None:
        via_plan = exists().where(
            col(cp.company_id) == Company.id,
            col(PlanEntitlement.plan_version_id) == cp.plan_version_id,
            col(PlanEntitlement.feature_id) == with_entitlement_for,
        )
        via_override = exists().where(
            col(CompanyOverride.company_id) == Company.id,
            col(CompanyOverride.feature_id) == with_entitlement_for,
        )
        query = query.where(or_(via_plan, via_override))
    if without_feature_override_for is not None:
        query = query.where(
            ~exists().where(
                col(CompanyOverride.company_id) == Company.id,
                col(CompanyOverride.feature_id) == without_feature_override_for,
            )
        )
    if q:
        by_key = exists().where(col(CompanyKey.company_id) == Company.id, text_match(q, CompanyKey.value))
        query = query.where(or_(text_match(q, Company.name, Company.id), by_key))
    query = query.order_by(col(Company.created_at).desc(), col(Company.id).desc())
    return list(session.exec(page.apply(query)).all())
