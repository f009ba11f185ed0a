"""Plan entitlements: what a plan's current published version grants for a feature."""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import Session, col, select

from ..exceptions import ConflictError, ValidationError
from ..models import CompanyPlan, Feature, Plan, PlanEntitlement, PlanVersion, utcnow
from .audit import SYSTEM, Actor, record, snapshot
from .changes import catalog_changed, entitlements_changed
from .common import FIRST_PAGE, Page, check_choice, require, text_match
from .company_plans import require_published_version
from .entitlement_values import normalize, usage_rule_id
from .inputs import EntitlementValue

PRICE_BEHAVIORS = ("credit_burndown", "overage", "pay_as_you_go", "pay_in_advance", "tier")


def _companies_on(session: Session, plan_version_id: str) -> list[str]:
    return list(
        session.exec(
            select(CompanyPlan.company_id).where(col(CompanyPlan.plan_version_id) == plan_version_id)
        ).all()
    )


def create_plan_entitlement(
    session: Session,
    *,
    plan_id: str,
    feature_id: str,
    value: EntitlementValue,
    plan_version_id: str | None = None,
    price_behavior: str | None = None,
    actor: Actor = SYSTEM,
) -> PlanEntitlement:
    """Grant ``value`` for the feature on the plan's published version (or ``plan_version_id``)."""
    plan = require(session, Plan, plan_id, "plan")
    feature = require(session, Feature, feature_id, "feature")
    check_choice(price_behavior, PRICE_BEHAVIORS, "price_behavior")
    if plan_version_id is not None:
        version = require(session, PlanVersion, plan_version_id, "plan version")
        if version.plan_id != plan.id:
            raise ValidationError(
                f"plan version {version.id!r} belongs to another plan", code="plan_version_mismatch"
            )
    else:
        version = require_published_version(session, plan)
    values = normalize(session, value)
    duplicate = session.exec(
        select(PlanEntitlement.id).where(
            col(PlanEntitlement.plan_version_id) == version.id, col(PlanEntitlement.feature_id) == feature.id
        )
    ).first()
    if duplicate:
        raise ConflictError(
            f"plan {plan.id!r} already has entitlement {duplicate!r} for feature {feature.id!r}",
            code="duplicate_entitlement",
        )
    row = PlanEntitlement(
        plan_id=plan.id,
        plan_version_id=version.id,
        feature_id=feature.id,
        price_behavior=price_behavior,
        rule_id_usage_exceeded=usage_rule_id(value.value_type, None),
        **values,
    )
    session.add(row)
    session.flush()
    record(session, actor, "plan.entitlement.created", "plan_entitlement", row.id, after=snapshot(row))
    catalog_changed(session)
    entitlements_changed(session, _companies_on(session, version.id))
    return row


def update_plan_entitlement(
    session: Session,
    entitlement_id: str,
    *,
    value: EntitlementValue,
    price_behavior: str | None = None,
    actor: Actor = SYSTEM,
) -> PlanEntitlement:
    """Replace the entitlement's value (the rule ids stay stable)."""
    row = require(session, PlanEntitlement, entitlement_id, "plan entitlement")
    check_choice(price_behavior, PRICE_BEHAVIORS, "price_behavior")
    before = snapshot(row)
    for name, column_value in normalize(session, value).items():
        setattr(row, name, column_value)
    row.price_behavior = price_behavior
    row.rule_id_usage_exceeded = usage_rule_id(row.value_type, row.rule_id_usage_exceeded)
    row.updated_at = utcnow()
    session.add(row)
    session.flush()
    record(
        session,
        actor,
        "plan.entitlement.updated",
        "plan_entitlement",
        row.id,
        before=before,
        after=snapshot(row),
    )
    catalog_changed(session)
    entitlements_changed(session, _companies_on(session, row.plan_version_id))
    return row


def delete_plan_entitlement(session: Session, entitlement_id: str, *, actor: Actor = SYSTEM) -> None:
    row = require(session, PlanEntitlement, entitlement_id, "plan entitlement")
    before = snapshot(row)
    companies = _companies_on(session, row.plan_version_id)
    session.delete(row)
    session.flush()
    record(session, actor, "plan.entitlement.deleted", "plan_entitlement", entitlement_id, before=before)
    catalog_changed(session)
    entitlements_changed(session, companies)


def get_plan_entitlement(session: Session, entitlement_id: str) -> PlanEntitlement:
    return require(session, PlanEntitlement, entitlement_id, "plan entitlement")


def list_plan_entitlements(
    session: Session,
    *,
    ids: Sequence[str] | None = None,
    feature_ids: Sequence[str] | None = None,
    plan_ids: Sequence[str] | None = None,
    plan_version_ids: Sequence[str] | None = None,
    q: str | None = None,
    page: Page = FIRST_PAGE,
) -> list[PlanEntitlement]:
    """Entitlements of each plan's published version, unless versions are asked for explicitly."""
    query = select(PlanEntitlement)
    if ids is not None:
        query = query.where(col(PlanEntitlement.id).in_(ids))
    if feature_ids is not None:
        query = query.where(col(PlanEntitlement.feature_id).in_(feature_ids))
    if plan_ids is not None:
        query = query.where(col(PlanEntitlement.plan_id).in_(plan_ids))
    if plan_version_ids is not None:
        query = query.where(col(PlanEntitlement.plan_version_id).in_(plan_version_ids))
    elif ids is None:
        published = (
            select(PlanVersion.id)
            .where(col(PlanVersion.status) == "published")
            .where(col(PlanVersion.plan_id) == PlanEntitlement.plan_id)
            .order_by(col(PlanVersion.version).desc())
            .limit(1)
            .scalar_subquery()
        )
        query = query.where(col(PlanEntitlement.plan_version_id) == published)
    if q:
        query = query.join(Feature, col(Feature.id) == PlanEntitlement.feature_id).where(
            text_match(q, Feature.name, Feature.key)
        )
    query = query.order_by(col(PlanEntitlement.created_at).desc(), col(PlanEntitlement.id).desc())
    return list(session.exec(page.apply(query)).all())
