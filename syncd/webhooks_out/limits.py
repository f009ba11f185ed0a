"""``entitlement.limit.*`` and ``entitlement.soft_limit.*`` triggers from usage and allocation.

Each (company, feature, limit kind) remembers the highest threshold notified
(``WebhookLimitState``) together with the metric period and the limit it applied to, so a
warning (80 %) and a reached (100 %) event fire once per period and allocation: a new
period or a changed allocation re-arms them. Usage that is not a period counter (a trait
such as seats in use) can fall; the stored level follows it down, so crossing again after
dropping below a threshold notifies again.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from ..api.views.companies import company_detail
from ..api.views.features import feature_response
from ..engine.wire import Company as WireCompany
from ..engine.wire import FeatureEntitlement
from ..models import Company, CompanyOverride, CompanyPlan, Feature, PlanEntitlement, WebhookLimitState
from .body import jsonable
from .events import OutEvent, envelope

WARNING, REACHED = 80, 100
# limit kind -> (threshold percent, request type), lowest first
THRESHOLDS: dict[str, tuple[tuple[int, str], ...]] = {
    "limit": ((WARNING, "entitlement.limit.warning"), (REACHED, "entitlement.limit.reached")),
    "soft_limit": ((WARNING, "entitlement.soft_limit.warning"), (REACHED, "entitlement.soft_limit.reached")),
}
LIMIT_TYPES = frozenset(t for pairs in THRESHOLDS.values() for _, t in pairs)


def level(usage: int, limit: int) -> int:
    """The highest threshold (percent) ``usage`` has reached."""
    reached = [pct for pct, _ in THRESHOLDS["limit"] if usage * 100 >= limit * pct]
    return max(reached, default=0)


def _limits(ent: FeatureEntitlement) -> list[tuple[str, int]]:
    out = []
    if ent.allocation is not None and ent.allocation > 0:
        out.append(("limit", ent.allocation))
    if ent.soft_limit is not None and ent.soft_limit > 0:
        out.append(("soft_limit", ent.soft_limit))
    return out


def _entitlement_id(session: Session, company_id: str, feature_id: str) -> str:
    """The id of the override or plan entitlement that grants the feature (best effort)."""
    override = session.exec(
        select(CompanyOverride.id).where(
            col(CompanyOverride.company_id) == company_id, col(CompanyOverride.feature_id) == feature_id
        )
    ).first()
    if override:
        return override
    versions = select(CompanyPlan.plan_version_id).where(col(CompanyPlan.company_id) == company_id)
    granted = session.exec(
        select(PlanEntitlement.id).where(
            col(PlanEntitlement.feature_id) == feature_id, col(PlanEntitlement.plan_version_id).in_(versions)
        )
    ).first()
    return granted or feature_id


def _body(session: Session, state: WireCompany, ent: FeatureEntitlement, limit: int) -> dict[str, Any]:
    """``WebFeatureUsageWebhookOutput`` (PascalCase keys except ``company``, as Schematic sends)."""
    feature = session.get(Feature, ent.feature_id)
    company = session.get(Company, state.id)
    return {
        "Entitlement": _entitlement_id(session, state.id, ent.feature_id),
        "Feature": feature_response(feature) if feature else None,
        "Usage": ent.usage,
        "Allocation": limit,
        "MetricResetAt": ent.metric_reset_at,
        "CreditUsage": None,
        "company": company_detail(session, company) if company else None,
    }


def limit_events(
    session: Session, state: WireCompany, features: Collection[str], now: datetime
) -> list[OutEvent]:
    """Threshold crossings of the company's watched ``features``; updates the stored levels."""
    stored = {
        (row.feature_id, row.kind): row
        for row in session.exec(
            select(WebhookLimitState).where(col(WebhookLimitState.company_id) == state.id)
        )
    }
    events: list[OutEvent] = []
    for ent in state.entitlements:
        if ent.feature_id not in features or ent.usage is None:
            continue
        period = ent.metric_reset_at.isoformat() if ent.metric_reset_at else ""
        for kind, limit in _limits(ent):
            row = stored.get((ent.feature_id, kind))
            same = row is not None and row.period == period and row.allocation == limit
            previous = row.level if row is not None and same else 0
            current = level(ent.usage, limit)
            for pct, request_type in THRESHOLDS[kind]:
                if previous < pct <= current:
                    body = jsonable(_body(session, state, ent, limit))
                    events.append(
                        OutEvent(
                            request_type=request_type,
                            company_id=state.id,
                            key=f"{request_type}:{ent.feature_id}",
                            envelope=envelope(request_type, body, state.id, ent.feature_id),
                            feature_id=ent.feature_id,
                        )
                    )
            if row is None:
                if current:
                    session.add(
                        WebhookLimitState(
                            company_id=state.id,
                            feature_id=ent.feature_id,
                            kind=kind,
                            period=period,
                            allocation=limit,
                            level=current,
                            updated_at=now,
                        )
                    )
            elif not same or row.level != current:
                row.period, row.allocation, row.level, row.updated_at = period, limit, current, now
                session.add(row)
    return events
