"""Companies and users as ``CompanyDetailResponseData`` / ``UserDetailResponseData``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from ...billing.downgrades import pending as pending_downgrade
from ...billing.downgrades import view as downgrade_view
from ...models import Company, CompanyMembership, CompanyMetric, Plan, User
from ...services import keys as entity_keys
from ...services.company_plans import company_plan_rows
from ...services.plans import version_prices
from ...services.traits import decode_value, trait_rows
from .common import ACCOUNT_ID, ENVIRONMENT_ID, preview, trait_definition
from .entitlement_summary import entitlement_summary


def _key_definition_id(entity_type: str, key: str) -> str:
    return f"ekdf_{entity_type}_{key}"


def keys_view(
    session: Session, entity_type: str, entity_id: str, created_at: datetime
) -> list[dict[str, Any]]:
    """``EntityKeyDetailResponseData`` for each key (keys carry their entity's timestamps)."""
    space = entity_keys.COMPANY_KEYS if entity_type == "company" else entity_keys.USER_KEYS
    out = []
    for row in entity_keys.key_rows(session, space, entity_id):
        definition_id = _key_definition_id(entity_type, row.key)
        out.append(
            {
                "id": f"ekey_{entity_type[0]}{row.id}",
                "definition_id": definition_id,
                "definition": {
                    "id": definition_id,
                    "key": row.key,
                    "entity_type": entity_type,
                    "created_at": created_at,
                    "updated_at": created_at,
                },
                "entity_id": entity_id,
                "entity_type": entity_type,
                "environment_id": ENVIRONMENT_ID,
                "key": row.key,
                "value": row.value,
                "created_at": created_at,
                "updated_at": created_at,
            }
        )
    return out


def traits_view(
    session: Session, entity_type: str, entity_id: str
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(``entity_traits``, ``traits``) for an entity."""
    details, values = [], {}
    for row, definition in trait_rows(session, entity_type, entity_id):
        details.append(
            {
                "id": f"etrt_{entity_type[0]}{row.id}",
                "definition_id": definition.id,
                "definition": trait_definition(definition),
                "environment_id": ENVIRONMENT_ID,
                "value": row.value,
                "created_at": row.updated_at,
                "updated_at": row.updated_at,
            }
        )
        values[definition.name] = decode_value(row.value, definition.trait_type)
    return details, values


def _plan_view(session: Session, plan: Plan, version_id: str, added_on: datetime) -> dict[str, Any]:
    """``CompanyPlanWithBillingSubView``."""
    prices = {p.interval: p for p in version_prices(session, version_id) if p.active}
    main = prices.get("month") or prices.get("year")
    return {
        "id": plan.id,
        "name": plan.name,
        "description": plan.description,
        "image_url": None,
        "plan_version_id": version_id,
        "billing_product_id": plan.stripe_product_id,
        "billing_product_external_id": plan.stripe_product_id,
        "plan_price": main.amount if main else None,
        "plan_period": main.interval if main else None,
        "included_credit_grants": [],
        "added_on": added_on,
    }


def _metrics(session: Session, company_id: str) -> list[dict[str, Any]]:
    rows = session.exec(
        select(CompanyMetric)
        .where(col(CompanyMetric.company_id) == company_id)
        .order_by(col(CompanyMetric.id))
    ).all()
    return [
        {
            "account_id": ACCOUNT_ID,
            "environment_id": ENVIRONMENT_ID,
            "company_id": company_id,
            "event_subtype": m.event_subtype,
            "period": m.period,
            "month_reset": m.month_reset,
            "value": m.value,
            "valid_until": m.valid_until,
            "captured_at_min": m.period_start,
            "captured_at_max": m.updated_at,
            "created_at": m.period_start,
        }
        for m in rows
    ]


def company_response(company: Company) -> dict[str, Any]:
    """``CompanyResponseData`` (the short form)."""
    return {
        "id": company.id,
        "name": company.name,
        "environment_id": ENVIRONMENT_ID,
        "logo_url": None,
        "last_seen_at": company.last_seen_at,
        "created_at": company.created_at,
        "updated_at": company.updated_at,
    }


def company_detail(session: Session, company: Company) -> dict[str, Any]:
    """``CompanyDetailResponseData``."""
    entity_traits, traits = traits_view(session, "company", company.id)
    base, add_ons, previews = None, [], []
    for row in company_plan_rows(session, company.id):
        plan = session.get(Plan, row.plan_id)
        if plan is None:
            continue
        view = _plan_view(session, plan, row.plan_version_id, row.created_at)
        previews.append(preview(plan.id, plan.name, plan.description))
        if row.role == "base":
            base = view
        else:
            add_ons.append(view)
    user_count = session.exec(
        select(func.count())
        .select_from(CompanyMembership)
        .where(col(CompanyMembership.company_id) == company.id)
    ).one()
    return {
        **company_response(company),
        "keys": keys_view(session, "company", company.id, company.created_at),
        "entity_traits": entity_traits,
        "traits": traits,
        "plan": base,
        "add_ons": add_ons,
        "plans": previews,
        "entitlements": entitlement_summary(session, company.id),
        "metrics": _metrics(session, company.id),
        "billing_subscriptions": [],
        "custom_plan_billings": [],
        "payment_methods": [],
        "rules": [],
        "user_count": user_count,
        "scheduled_downgrade": downgrade_view(pending_downgrade(session, company.id)),
    }


def user_detail(session: Session, user: User) -> dict[str, Any]:
    """``UserDetailResponseData``."""
    entity_traits, traits = traits_view(session, "user", user.id)
    memberships = session.exec(
        select(CompanyMembership, Company)
        .join(Company, col(Company.id) == CompanyMembership.company_id)
        .where(col(CompanyMembership.user_id) == user.id)
        .order_by(col(CompanyMembership.created_at), col(CompanyMembership.id))
    ).all()
    return {
        "id": user.id,
        "name": user.name,
        "environment_id": ENVIRONMENT_ID,
        "last_seen_at": user.last_seen_at,
        "created_at": user.created_at,
        "updated_at": user.updated_at,
        "keys": keys_view(session, "user", user.id, user.created_at),
        "entity_traits": entity_traits,
        "traits": traits,
        "company_memberships": [
            {
                "id": f"cmem_{m.id}",
                "company_id": m.company_id,
                "user_id": user.id,
                "company": company_response(company),
                "created_at": m.created_at,
                "updated_at": m.created_at,
            }
            for m, company in memberships
        ],
    }
