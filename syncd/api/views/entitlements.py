"""Plan entitlements and company overrides as Schematic's response shapes."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from ...models import Company, CompanyOverride, CreditType, Feature, Plan, PlanEntitlement, TraitDefinition
from ...services.overrides import override_notes
from .common import ENVIRONMENT_ID, credit_view, plan_response, trait_definition
from .companies import company_detail
from .features import feature_response


def _value_fields(session: Session, row: PlanEntitlement | CompanyOverride) -> dict[str, Any]:
    trait = session.get(TraitDefinition, row.value_trait_id) if row.value_trait_id else None
    credit = session.get(CreditType, row.value_credit_id) if row.value_credit_id else None
    return {
        "value_type": row.value_type,
        "value_bool": row.value_bool,
        "value_numeric": row.value_numeric,
        "value_trait_id": row.value_trait_id,
        "value_trait": trait_definition(trait) if trait else None,
        "value_credit": credit_view(credit) if credit else None,
        "consumption_rate": row.credit_consumption_rate,
        "metric_period": row.metric_period,
        "metric_period_month_reset": row.metric_period_month_reset,
        "rule_id": row.rule_id,
        "rule_id_usage_exceeded": row.rule_id_usage_exceeded,
        "environment_id": ENVIRONMENT_ID,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


def plan_entitlement_view(
    session: Session, row: PlanEntitlement, *, plan: Plan | None = None
) -> dict[str, Any]:
    """``PlanEntitlementResponseData`` with the embedded feature and plan."""
    feature = session.get(Feature, row.feature_id)
    plan = plan or session.get(Plan, row.plan_id)
    return {
        **_value_fields(session, row),
        "id": row.id,
        "plan_id": row.plan_id,
        "plan_version_id": row.plan_version_id,
        "feature_id": row.feature_id,
        "feature": feature_response(feature) if feature else None,
        "plan": plan_response(plan) if plan else None,
        "soft_limit": row.soft_limit,
        "price_behavior": row.price_behavior,
        "currency_prices": [],
        "warning_tiers": [],
    }


def override_view(
    session: Session, row: CompanyOverride, companies: dict[str, dict[str, Any]] | None = None
) -> dict[str, Any]:
    """``CompanyOverrideResponseData`` with notes and the embedded company and feature.

    ``companies`` caches rendered company details across the rows of one list response.
    """
    cache = companies if companies is not None else {}
    if row.company_id not in cache:
        company = session.get(Company, row.company_id)
        cache[row.company_id] = company_detail(session, company) if company else {}
    feature = session.get(Feature, row.feature_id)
    return {
        **_value_fields(session, row),
        "id": row.id,
        "company_id": row.company_id,
        "company": cache[row.company_id] or None,
        "feature_id": row.feature_id,
        "feature": feature_response(feature) if feature else None,
        "value_credit_id": row.value_credit_id,
        "expiration_date": row.expiration_date,
        "notes": [
            {
                "id": note.id,
                "note": note.note,
                "external_user_id": note.external_user_id or "",
                "external_user_name": note.external_user_name or "",
                "created_at": note.created_at,
                "updated_at": note.updated_at,
            }
            for note in override_notes(session, row.id)
        ],
    }
