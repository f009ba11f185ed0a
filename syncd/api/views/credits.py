"""Credit grants as Schematic's ``BillingCreditGrantResponseData`` / ``CreditCompanyGrantView``."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, col, func, select

from ...models import Company, CreditGrant, CreditLedgerEntry, CreditType, Plan, PlanCreditGrant, PlanVersion

_SOURCE_LABELS = {"plan": "Plan", "purchased": "Purchase", "adjustment": "Adjustment", "free": "Free"}


def grant_view(session: Session, row: CreditGrant) -> dict[str, Any]:
    credit = session.get(CreditType, row.credit_type_id)
    company = session.get(Company, row.company_id)
    plan = _plan_of(session, row)
    used = max(0.0, row.amount - row.remaining - _zeroed_amount(session, row))
    return {
        "id": row.id,
        "company_id": row.company_id,
        "company_name": company.name if company else "",
        "credit_id": row.credit_type_id,
        "billing_credit_id": row.credit_type_id,
        "credit_name": credit.name if credit else "",
        "credit_description": "",
        "credit_icon": None,
        "singular_name": credit.singular_name if credit else None,
        "plural_name": credit.plural_name if credit else None,
        "currency": None,
        "grant_reason": row.reason,
        "quantity": row.amount,
        "quantity_remaining": row.remaining,
        "quantity_used": used,
        "renewal_enabled": row.reason == "plan",
        "renewal_period": None,
        "source_grant_id": row.source_grant_id,
        "source_label": _SOURCE_LABELS.get(row.reason, row.reason.title()),
        "plan_id": plan.id if plan else None,
        "plan_name": plan.name if plan else None,
        "expires_at": row.expires_at,
        "valid_from": row.granted_at,
        "zeroed_out_date": row.zeroed_at,
        "zeroed_out_reason": row.zeroed_reason,
        "created_at": row.granted_at,
        "updated_at": row.zeroed_at or row.granted_at,
    }


def _zeroed_amount(session: Session, row: CreditGrant) -> float:
    if row.zeroed_at is None:
        return 0.0
    query = select(func.coalesce(func.sum(CreditLedgerEntry.amount), 0.0)).where(
        col(CreditLedgerEntry.grant_id) == row.id, col(CreditLedgerEntry.reason) == "zero_out"
    )
    return float(session.exec(query).one())


def _plan_of(session: Session, row: CreditGrant) -> Plan | None:
    if row.plan_credit_grant_id is None:
        return None
    plan_grant = session.get(PlanCreditGrant, row.plan_credit_grant_id)
    version = session.get(PlanVersion, plan_grant.plan_version_id) if plan_grant else None
    return session.get(Plan, version.plan_id) if version else None
