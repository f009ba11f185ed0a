"""A company's entitlements as ``FeatureEntitlement`` rows, from its plans and overrides.

This is the static part only (what is granted, not usage): per feature, an unexpired boolean
override wins outright; otherwise the most generous grant across the company's plan
versions and its override applies (unlimited > higher numeric > trait/credit > true).
Boolean grants of ``false`` are left out. Live usage and credit balances come from the
engine's snapshots, not from here.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import or_
from sqlmodel import Session, col, select

from ...models import CompanyOverride, CompanyPlan, Feature, PlanEntitlement, utcnow

Grant = PlanEntitlement | CompanyOverride


def _rank(grant: Grant) -> tuple[int, float]:
    if grant.value_type == "unlimited":
        return (4, 0.0)
    if grant.value_type == "numeric":
        return (3, float(grant.value_numeric or 0))
    if grant.value_type in ("trait", "credit"):
        return (2, 0.0)
    return (1, 0.0) if grant.value_bool else (0, 0.0)


def _pick(grants: list[Grant]) -> Grant:
    override = next((g for g in grants if isinstance(g, CompanyOverride)), None)
    if override is not None and override.value_type == "boolean":
        return override
    return max(grants, key=_rank)


def entitlement_summary(session: Session, company_id: str) -> list[dict[str, Any]]:
    versions = session.exec(
        select(CompanyPlan.plan_version_id).where(col(CompanyPlan.company_id) == company_id)
    ).all()
    grants: dict[str, list[Grant]] = {}
    for ent in session.exec(
        select(PlanEntitlement).where(col(PlanEntitlement.plan_version_id).in_(versions))
    ):
        grants.setdefault(ent.feature_id, []).append(ent)
    overrides = session.exec(
        select(CompanyOverride).where(
            col(CompanyOverride.company_id) == company_id,
            or_(
                col(CompanyOverride.expiration_date).is_(None),
                col(CompanyOverride.expiration_date) > utcnow(),
            ),
        )
    )
    for override in overrides:
        grants.setdefault(override.feature_id, []).append(override)
    if not grants:
        return []
    features = {f.id: f for f in session.exec(select(Feature).where(col(Feature.id).in_(grants)))}
    out = []
    for feature_id in sorted(grants, key=lambda fid: features[fid].key if fid in features else fid):
        feature = features.get(feature_id)
        chosen = _pick(grants[feature_id])
        if feature is None or (chosen.value_type == "boolean" and not chosen.value_bool):
            continue
        out.append(
            {
                "feature_id": feature.id,
                "feature_key": feature.key,
                "value_type": chosen.value_type,
                "allocation": chosen.value_numeric if chosen.value_type == "numeric" else None,
                "soft_limit": chosen.soft_limit if isinstance(chosen, PlanEntitlement) else None,
                "event_name": feature.event_subtype,
                "event_subtype": feature.event_subtype,
                "metric_period": chosen.metric_period,
                "month_reset": chosen.metric_period_month_reset,
                "credit_id": chosen.value_credit_id,
                "consumption_rate": chosen.credit_consumption_rate,
                "usage": None,
            }
        )
    return out
