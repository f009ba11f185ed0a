"""Would a company be over the limits of a plan version it moves to?

Usage comes from the same loader the flag engine uses (event counts, trait usage). A
feature the company has an override for keeps the override (Schematic re-applies
overrides), so it never blocks. A used feature the new plan does not grant counts as a
limit of 0.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlmodel import Session, col, select

from ..models import CompanyOverride, CompanyTrait, PlanEntitlement
from ..state import load_companies


@dataclass(frozen=True, slots=True)
class OverLimit:
    feature_key: str
    usage: int
    limit: int

    def as_dict(self) -> dict[str, object]:
        return {"feature_key": self.feature_key, "usage": self.usage, "limit": self.limit}


def _trait_allocation(session: Session, company_id: str, trait_id: str | None) -> int | None:
    if trait_id is None:
        return None
    row = session.exec(
        select(CompanyTrait).where(
            col(CompanyTrait.company_id) == company_id, col(CompanyTrait.trait_definition_id) == trait_id
        )
    ).first()
    try:
        return int(float(row.value)) if row is not None else 0
    except ValueError:
        return 0


def over_limits(
    session: Session, company_id: str, version_ids: list[str], now: dt.datetime
) -> list[OverLimit]:
    """Features whose current usage exceeds what ``version_ids`` (base + add-ons) would allow."""
    company = load_companies(session, [company_id], now).get(company_id)
    if company is None:
        return []
    overridden = set(
        session.exec(
            select(CompanyOverride.feature_id).where(col(CompanyOverride.company_id) == company_id)
        ).all()
    )
    granted: dict[str, list[PlanEntitlement]] = {}
    for row in session.exec(
        select(PlanEntitlement).where(col(PlanEntitlement.plan_version_id).in_(version_ids))
    ).all():
        granted.setdefault(row.feature_id, []).append(row)
    found: list[OverLimit] = []
    for ent in company.entitlements:
        if ent.usage is None or ent.usage <= 0 or ent.feature_id in overridden:
            continue
        limits: list[int | None] = []
        for new in granted.get(ent.feature_id, []):
            if new.value_type == "unlimited" or (new.value_type == "boolean" and new.value_bool):
                limits.append(None)
            elif new.value_type == "numeric":
                limits.append(new.value_numeric or 0)
            elif new.value_type == "trait":
                limits.append(_trait_allocation(session, company_id, new.value_trait_id))
        if any(limit is None for limit in limits) and limits:
            continue
        limit = max((x for x in limits if x is not None), default=0)
        if ent.usage > limit:
            found.append(OverLimit(ent.feature_key, ent.usage, limit))
    return found
