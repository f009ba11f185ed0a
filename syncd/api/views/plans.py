"""Plans as ``PlanDetailResponseData`` and their billing link as ``BillingProductPlanResponseData``."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from ...models import CatalogSettingsRow, CompanyPlan, Feature, Plan, PlanEntitlement, PlanPrice, PlanVersion
from ...services.company_plans import published_version
from ...services.features import flag_of
from ...services.plans import charge_type, version_prices
from .common import ACCOUNT_ID, DEFAULT_ICON, ENVIRONMENT_ID, plan_response
from .entitlements import plan_entitlement_view
from .features import feature_response, flag_response

_INTERVAL = {"month": "month", "year": "year", "one_time": "one-time"}


def version_view(plan: Plan, version: PlanVersion) -> dict[str, Any]:
    """``PlanVersionResponseData``."""
    return {
        "id": version.id,
        "version": version.version,
        "status": version.status,
        "name": plan.name,
        "description": plan.description,
        "icon": plan.icon or DEFAULT_ICON,
        "plan_type": plan.plan_type,
        "renewal_policy": "auto_renew",
        "environment_id": ENVIRONMENT_ID,
        "created_at": version.created_at,
        "updated_at": version.published_at or version.created_at,
    }


def price_view(price: PlanPrice) -> dict[str, Any]:
    """``BillingPriceResponseData``."""
    return {
        "id": price.id,
        "price": price.amount,
        "currency": price.currency,
        "interval": _INTERVAL.get(price.interval, price.interval),
        "interval_count": 1,
        "external_price_id": price.stripe_price_id or "",
        "provider_type": "stripe",
        "scheme": "per_unit",
        "nickname": None,
    }


def _features(session: Session, version_id: str) -> list[dict[str, Any]]:
    """``FeatureInPlanResponseData`` for the features a version grants."""
    rows = session.exec(
        select(Feature)
        .join(PlanEntitlement, col(PlanEntitlement.feature_id) == Feature.id)
        .where(col(PlanEntitlement.plan_version_id) == version_id)
        .order_by(col(Feature.key))
    ).all()
    out = []
    for feature in rows:
        flag = flag_of(session, feature.id)
        flags = [{**flag_response(flag), "rules": [], "last_checked_at": None}] if flag else []
        out.append({**feature_response(feature), "flags": flags, "plans": []})
    return out


def plan_detail(
    session: Session, plan: Plan, *, version_id: str | None = None, with_entitlements: bool = True
) -> dict[str, Any]:
    """``PlanDetailResponseData`` for the published version (or ``version_id``)."""
    versions = session.exec(
        select(PlanVersion).where(col(PlanVersion.plan_id) == plan.id).order_by(col(PlanVersion.version))
    ).all()
    active = published_version(session, plan.id)
    shown = next((v for v in versions if v.id == version_id), None) if version_id else active
    prices = version_prices(session, shown.id) if shown else []
    by_interval = {p.interval: price_view(p) for p in prices if p.active}
    settings = session.get(CatalogSettingsRow, 1)
    company_count = session.exec(
        select(func.count()).select_from(CompanyPlan).where(col(CompanyPlan.plan_id) == plan.id)
    ).one()
    entitlements = None
    if with_entitlements and shown is not None:
        rows = session.exec(
            select(PlanEntitlement)
            .where(col(PlanEntitlement.plan_version_id) == shown.id)
            .order_by(col(PlanEntitlement.created_at), col(PlanEntitlement.id))
        ).all()
        entitlements = [plan_entitlement_view(session, e, plan=plan) for e in rows]
    drafts = [v for v in versions if v.status == "draft"]
    return {
        **plan_response(plan),
        "active_version": version_view(plan, active) if active else None,
        "draft_version": version_view(plan, drafts[-1]) if drafts else None,
        "versions": [version_view(plan, v) for v in versions],
        "billing_strategy": "provider_managed" if plan.stripe_product_id else "no_billing",
        "charge_type": charge_type(plan, prices),
        "controlled_by": "stripe" if plan.stripe_product_id else "schematic",
        "company_count": company_count,
        "credits": [],
        "currency_prices": [],
        "features": _features(session, shown.id) if shown else [],
        "entitlements": entitlements,
        "is_default": settings is not None and settings.fallback_plan_id == plan.id,
        "is_free": charge_type(plan, prices) in ("free", "none"),
        "is_trialable": bool(plan.trial_days),
        "trial_days": plan.trial_days,
        "monthly_price": by_interval.get("month"),
        "yearly_price": by_interval.get("year"),
        "one_time_price": by_interval.get("one_time"),
    }


def billing_product_plan(session: Session, plan: Plan) -> dict[str, Any]:
    """``BillingProductPlanResponseData``: the plan's Stripe link."""
    version = published_version(session, plan.id)
    prices = {p.interval: p for p in version_prices(session, version.id) if p.active} if version else {}
    return {
        "account_id": ACCOUNT_ID,
        "environment_id": ENVIRONMENT_ID,
        "plan_id": plan.id,
        "billing_product_id": plan.stripe_product_id or "",
        "billing_strategy": "provider_managed" if plan.stripe_product_id else "no_billing",
        "charge_type": charge_type(plan, list(prices.values())),
        "controlled_by": "stripe",
        "is_trialable": bool(plan.trial_days),
        "trial_days": plan.trial_days,
        "monthly_price_id": prices["month"].stripe_price_id if "month" in prices else None,
        "yearly_price_id": prices["year"].stripe_price_id if "year" in prices else None,
        "one_time_price_id": prices["one_time"].stripe_price_id if "one_time" in prices else None,
    }
