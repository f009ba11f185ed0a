"""Change-log rows -> webhook events in Schematic's envelope and body shapes.

Domain events recorded with :func:`syncd.services.changes.record_event` carry JSON
snapshots of the rows involved (``{"override": ...}``, ``{"plan_change": ...}``,
``{"scheduled_downgrade": ...}``) or a ready ``{"body": ...}``; they are rendered here when
published, so a body reflects the row as it was at the change. ``entitlements.changed``
becomes ``entitlements.updated`` (the company's full state, a syncd extension) and the
``entitlement.*limit.*`` triggers (``limits.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session

from ..api.views.common import ACCOUNT_ID, ENVIRONMENT_ID
from ..api.views.companies import company_detail, company_response
from ..api.views.entitlements import override_view
from ..hookspecs import Change
from ..models import Company, CompanyOverride, Plan, PlanVersion

ENTITLEMENTS_UPDATED = "entitlements.updated"
# topic -> Schematic ``object_type`` (anything else: the part before the first dot).
_OBJECT_TYPES = {
    "company.plan_changed": "plan_change",
    "company.scheduled_downgrade": "scheduled_downgrade",
    "subscription.trial.ended": "subscription",
    ENTITLEMENTS_UPDATED: "company_entitlements",
    "test.send": "test",
}


@dataclass(frozen=True, slots=True)
class OutEvent:
    """One event to deliver to every endpoint subscribed to ``request_type``."""

    request_type: str
    company_id: str | None
    key: str  # unique among the events of one change and company
    envelope: dict[str, Any]
    feature_id: str | None = None


def object_type(request_type: str) -> str:
    if request_type in _OBJECT_TYPES:
        return _OBJECT_TYPES[request_type]
    if request_type.startswith("company.override."):
        return "company_override"
    if request_type.startswith(("entitlement.", "credit.")):
        return "feature_usage"
    return request_type.split(".", 1)[0]


def envelope(
    request_type: str, body: Any, company_id: str | None = None, feature_id: str | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "action": request_type,
        "account_id": ACCOUNT_ID,
        "environment_id": ENVIRONMENT_ID,
        "object_type": object_type(request_type),
        "body": body,
    }
    if company_id is not None:
        out["company_id"] = company_id
    if feature_id is not None:
        out["feature_id"] = feature_id
    return out


def _plan_snapshot(session: Session, plan_id: str | None) -> dict[str, Any] | None:
    """``PlanSnapshotView``."""
    if plan_id is None:
        return None
    plan = session.get(Plan, plan_id)
    if plan is None:
        return {"id": plan_id, "name": "", "description": "", "icon": "", "deleted": True}
    return {
        "id": plan.id,
        "name": plan.name,
        "description": plan.description,
        "icon": plan.icon or "",
        "deleted": False,
    }


def _version_snapshot(session: Session, version_id: str | None) -> dict[str, Any] | None:
    """``PlanVersionSnapshotView``."""
    version = session.get(PlanVersion, version_id) if version_id else None
    if version is None:
        return None
    plan = session.get(Plan, version.plan_id)
    return {"id": version.id, "name": plan.name if plan else "", "version": version.version}


def _company(session: Session, company_id: str | None) -> dict[str, Any] | None:
    company = session.get(Company, company_id) if company_id else None
    return company_response(company) if company else None


def plan_change_body(session: Session, change: dict[str, Any]) -> dict[str, Any]:
    """``PlanChangeResponseData`` from a ``PlanChange`` snapshot."""
    previous, current = change.get("previous_base_plan_id"), change.get("base_plan_id")
    previous_version, version = (
        change.get("previous_base_plan_version_id"),
        change.get("base_plan_version_id"),
    )
    return {
        "id": change["id"],
        "company_id": change["company_id"],
        "company": _company(session, change["company_id"]),
        "environment_id": ENVIRONMENT_ID,
        "action": change.get("action"),
        "actor_type": change.get("actor_type") or "system",
        "base_plan_action": change.get("base_plan_action"),
        "subscription_change_action": change.get("subscription_change_action"),
        "base_plan": _plan_snapshot(session, current),
        "previous_base_plan": _plan_snapshot(session, previous),
        "base_plan_version": _version_snapshot(session, version),
        "previous_base_plan_version": _version_snapshot(session, previous_version),
        "add_ons_added": [_plan_snapshot(session, p) for p in change.get("add_ons_added") or []],
        "add_ons_removed": [_plan_snapshot(session, p) for p in change.get("add_ons_removed") or []],
        "is_version_upgrade": previous is not None and previous == current and previous_version != version,
        "traits_updated": change.get("traits_updated") or [],
        "trial_status": None,
        "trial_expires_at": None,
        "trial_converted_at": None,
        "created_at": change.get("created_at"),
        "updated_at": change.get("created_at"),
    }


def override_body(session: Session, snapshot: dict[str, Any]) -> dict[str, Any]:
    """``CompanyOverrideResponseData`` from a ``CompanyOverride`` snapshot."""
    row = CompanyOverride.model_validate(snapshot)
    return override_view(session, row)


def downgrade_body(session: Session, row: dict[str, Any]) -> dict[str, Any]:
    """``WebScheduledDowngradeWebhookOutput`` from a ``ScheduledDowngrade`` snapshot."""
    return {
        "id": row["id"],
        "company": _company(session, row.get("company_id")),
        "execute_after": row.get("effective_after"),
        "from_plan": _plan_snapshot(session, row.get("from_plan_id")),
        "to_plan": _plan_snapshot(session, row.get("to_plan_id")),
        "scheduled_interval": row.get("scheduled_interval"),
        "scheduled_price": row.get("scheduled_price"),
    }


def domain_body(session: Session, change: Change) -> Any:
    """The ``body`` of a domain event from its change-log payload."""
    payload = change.payload
    if "body" in payload:
        return payload["body"]
    if isinstance(payload.get("plan_change"), dict):
        return plan_change_body(session, payload["plan_change"])
    if isinstance(payload.get("override"), dict):
        return override_body(session, payload["override"])
    if isinstance(payload.get("scheduled_downgrade"), dict):
        return downgrade_body(session, payload["scheduled_downgrade"])
    if change.topic.startswith("company.") and change.company_id and not payload:
        company = session.get(Company, change.company_id)
        return company_detail(session, company) if company else {"id": change.company_id}
    return payload


def entitlements_body(company_id: str, state: dict[str, Any] | None, now: datetime) -> dict[str, Any]:
    """``entitlements.updated``: the company's whole evaluation state (wire model), or deleted."""
    return {"company_id": company_id, "deleted": state is None, "company": state, "computed_at": now}
