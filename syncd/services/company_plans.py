"""Which plans a company is on: one base plan plus add-ons, with plan-change history."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from sqlmodel import Session, col, select

from ..exceptions import ValidationError
from ..models import (
    CatalogSettingsRow,
    Company,
    CompanyPlan,
    Plan,
    PlanChange,
    PlanPrice,
    PlanVersion,
    utcnow,
)
from .audit import SYSTEM, Actor, record, snapshot
from .changes import entitlements_changed, record_event
from .common import require, require_all
from .credits import sync_plan_grants


def published_version(session: Session, plan_id: str) -> PlanVersion | None:
    """The plan's current published version (the highest published version number)."""
    return session.exec(
        select(PlanVersion)
        .where(col(PlanVersion.plan_id) == plan_id, col(PlanVersion.status) == "published")
        .order_by(col(PlanVersion.version).desc())
    ).first()


def require_published_version(session: Session, plan: Plan) -> PlanVersion:
    version = published_version(session, plan.id)
    if version is None:
        raise ValidationError(
            f"plan {plan.id!r} has no published version", code="plan_not_published", plan_id=plan.id
        )
    return version


def company_plan_rows(session: Session, company_id: str) -> list[CompanyPlan]:
    return list(
        session.exec(
            select(CompanyPlan)
            .where(col(CompanyPlan.company_id) == company_id)
            .order_by(col(CompanyPlan.created_at), col(CompanyPlan.id))
        ).all()
    )


def _monthly_amount(session: Session, version_id: str | None) -> float:
    if version_id is None:
        return 0.0
    prices = session.exec(
        select(PlanPrice).where(col(PlanPrice.plan_version_id) == version_id, col(PlanPrice.active))
    ).all()
    by_interval = {p.interval: p.amount for p in prices}
    if "month" in by_interval:
        return float(by_interval["month"])
    if "year" in by_interval:
        return by_interval["year"] / 12
    return 0.0


def _classify(
    session: Session,
    previous_version_id: str | None,
    new_version_id: str | None,
    base_changed: bool,
    added: list[str],
    removed: list[str],
) -> str | None:
    """Best-effort ``subscription_change_action`` from the monthly-equivalent base prices."""
    before = _monthly_amount(session, previous_version_id)
    after = _monthly_amount(session, new_version_id)
    if base_changed:
        if before <= 0 < after:
            return "subscribe"
        if after <= 0 < before:
            return "unsubscribe"
        if 0 < before < after:
            return "upgrade"
        if 0 < after < before:
            return "downgrade"
        return None
    if added:
        return "upgrade"
    return "downgrade" if removed else None


def _move_pinned_versions(
    session: Session,
    rows: Sequence[CompanyPlan],
    versions: Mapping[str, PlanVersion],
    version_ids: Mapping[str, str],
    now: datetime,
) -> dict[str, str]:
    """Move kept assignments onto their pinned versions; returns {plan_id: previous version id}."""
    moved: dict[str, str] = {}
    for row in rows:
        target = versions.get(row.plan_id)
        if row.plan_id in version_ids and target is not None and row.plan_version_id != target.id:
            moved[row.plan_id] = row.plan_version_id
            row.plan_version_id, row.updated_at = target.id, now
            session.add(row)
    return moved


def update_company_plans(
    session: Session,
    company_id: str,
    *,
    base_plan_id: str | None,
    add_on_ids: Sequence[str],
    actor: Actor = SYSTEM,
    source: str = "manual",
    action: str = "manage_plan",
    base_plan_action: str | None = None,
    reason: str | None = None,
    version_ids: Mapping[str, str] | None = None,
) -> PlanChange | None:
    """Make the company's plans exactly ``base_plan_id`` (None: no base plan) plus ``add_on_ids``.

    New assignments use each plan's published version; a plan the company keeps stays on its
    current version. ``version_ids`` pins plans to given versions instead (billing: the version
    whose Stripe price the subscription pays), moving kept plans too. Writes a ``PlanChange``
    row when anything changed and returns it.
    """
    company = require(session, Company, company_id, "company")
    base = require(session, Plan, base_plan_id, "plan") if base_plan_id is not None else None
    if base is not None and base.plan_type != "plan":
        raise ValidationError(
            f"plan {base.id!r} is an add-on and cannot be a base plan", code="invalid_base_plan"
        )
    add_ons = require_all(session, Plan, add_on_ids, "plan")
    for plan in add_ons:
        if plan.plan_type != "add_on":
            raise ValidationError(f"plan {plan.id!r} is not an add-on", code="invalid_add_on")
    versions = {p.id: require_published_version(session, p) for p in [*add_ons, *([base] if base else [])]}
    for plan_id, version_id in (version_ids or {}).items():
        pinned = session.get(PlanVersion, version_id)
        if plan_id in versions and pinned is not None and pinned.plan_id == plan_id:
            versions[plan_id] = pinned

    rows = company_plan_rows(session, company.id)
    current_base = next((r for r in rows if r.role == "base"), None)
    current_add_ons = {r.plan_id: r for r in rows if r.role == "add_on"}
    now = utcnow()

    base_changed = (current_base.plan_id if current_base else None) != (base.id if base else None)
    moved = _move_pinned_versions(session, rows, versions, version_ids or {}, now)
    if current_base is not None and current_base.plan_id in moved:
        base_changed = True  # a version change of the base plan is recorded like a plan change
    if base_changed and not (
        current_base is not None and base is not None and current_base.plan_id == base.id
    ):
        if current_base is not None:
            session.delete(current_base)
            session.flush()
        if base is not None:
            session.add(
                CompanyPlan(
                    company_id=company.id,
                    plan_id=base.id,
                    plan_version_id=versions[base.id].id,
                    role="base",
                    source=source,
                    created_at=now,
                    updated_at=now,
                )
            )
    wanted = [p.id for p in add_ons]
    removed = [pid for pid in current_add_ons if pid not in wanted]
    added = [pid for pid in wanted if pid not in current_add_ons]
    for pid in removed:
        session.delete(current_add_ons[pid])
    for pid in added:
        session.add(
            CompanyPlan(
                company_id=company.id,
                plan_id=pid,
                plan_version_id=versions[pid].id,
                role="add_on",
                source=source,
                created_at=now,
                updated_at=now,
            )
        )
    if not (base_changed or added or removed or moved):
        return None

    previous_version = moved.get(current_base.plan_id, current_base.plan_version_id) if current_base else None
    new_version = (versions[base.id].id if base_changed else previous_version) if base else None
    change = PlanChange(
        company_id=company.id,
        action=action,
        base_plan_action=base_plan_action,
        subscription_change_action=_classify(
            session, previous_version, new_version, base_changed, added, removed
        ),
        actor_type=actor.actor_type,
        actor=actor.actor,
        previous_base_plan_id=current_base.plan_id if current_base else None,
        base_plan_id=base.id if base else None,
        previous_base_plan_version_id=previous_version,
        base_plan_version_id=new_version,
        add_ons_added=added,
        add_ons_removed=removed,
        created_at=now,
    )
    session.add(change)
    session.flush()
    record(session, actor, "company.plan_changed", "company", company.id, after=snapshot(change))
    record_event(
        session,
        "company.plan_changed",
        company.id,
        {
            "plan_change": snapshot(change),
            "plan_change_id": change.id,
            "reason": reason or action,  # why: manage_plan, access_ended, trial_ended, ...
            "base_plan_id": change.base_plan_id,
            "previous_base_plan_id": change.previous_base_plan_id,
            "add_ons_added": list(change.add_ons_added),
            "add_ons_removed": list(change.add_ons_removed),
        },
    )
    entitlements_changed(session, [company.id])
    sync_plan_grants(session, company.id, now)  # the new plan's credits, the old plan's gone
    return change


def assign_plan_on_creation(
    session: Session, company_id: str, base_plan_id: str | None, actor: Actor
) -> PlanChange | None:
    """A new company gets ``base_plan_id`` if given, else the catalog's initial plan (if any)."""
    if base_plan_id is not None:
        return update_company_plans(
            session,
            company_id,
            base_plan_id=base_plan_id,
            add_on_ids=[],
            actor=actor,
            action="company_upsert",
        )
    settings = session.get(CatalogSettingsRow, 1)
    if settings is None or settings.initial_plan_id is None:
        return None
    return update_company_plans(
        session,
        company_id,
        base_plan_id=settings.initial_plan_id,
        add_on_ids=[],
        actor=actor,
        source="initial",
        action="company_upsert",
        base_plan_action="initial",
    )
