"""Persist what became true at a time boundary, one transaction per company, and publish it.

Each transition is idempotent: its own state change marks it done (a trial's status, a removed
assignment, a downgrade's status, a grant's ``zeroed_at``), or a ``boundary_mark`` row does when
nothing else changes (an override expiring, a metric period rolling over). Every transaction
goes through the seam (``entitlements_changed`` / ``record_event``), so adapters and the
engines of every replica follow through ``change_log``.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import structlog
from sqlalchemy import and_, func
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from ..db import session_scope
from ..exceptions import ValidationError
from ..models import (
    BoundaryMark,
    CatalogSettingsRow,
    CompanyOverride,
    CompanyPlan,
    CreditGrant,
    CreditLedgerEntry,
    PlanChange,
    ScheduledDowngrade,
)
from ..services.changes import entitlements_changed, record_event
from ..services.company_plans import company_plan_rows, update_company_plans
from ..services.credits import sync_plan_grants
from .rollover import roll_metric_periods

log = structlog.get_logger(__name__)

MARK_WINDOW = dt.timedelta(days=30)  # overrides expired longer ago are not announced any more


def _each_company(engine: Engine, company_ids: Iterable[str], apply: Callable[[Session, str], bool]) -> int:
    """Run ``apply`` for each company in its own transaction; count those that changed."""
    done = 0
    for cid in sorted(set(company_ids)):
        try:
            with session_scope(engine) as session:
                done += bool(apply(session, cid))
        except IntegrityError:
            log.info("boundary_already_applied", company_id=cid)  # a concurrent run marked it
        except Exception:
            log.exception("boundary_transition_failed", company_id=cid)
    return done


def _set_plans(
    session: Session, cid: str, base: str | None, add_ons: list[str], reason: str, **kwargs: Any
) -> PlanChange | None:
    try:
        change = update_company_plans(
            session, cid, base_plan_id=base, add_on_ids=add_ons, reason=reason, **kwargs
        )
    except ValidationError as exc:  # e.g. the target plan lost its published version
        log.error("boundary_plan_change_refused", company_id=cid, reason=reason, error=exc.message)
        return None
    return change


# ------------------------------------------------------------------ overrides


def expire_overrides(engine: Engine, now: dt.datetime) -> int:
    mark = and_(
        col(BoundaryMark.kind) == "override_expired",
        col(BoundaryMark.subject) == col(CompanyOverride.id),
    )
    with Session(engine) as session:
        rows = session.exec(
            select(CompanyOverride.company_id)
            .outerjoin(BoundaryMark, mark)
            .where(
                col(CompanyOverride.expiration_date) <= now,
                col(CompanyOverride.expiration_date) > now - MARK_WINDOW,
                col(BoundaryMark.kind).is_(None),
            )
        ).all()

    def apply(session: Session, cid: str) -> bool:
        due = session.exec(
            select(CompanyOverride)
            .outerjoin(BoundaryMark, mark)
            .where(
                col(CompanyOverride.company_id) == cid,
                col(CompanyOverride.expiration_date) <= now,
                col(CompanyOverride.expiration_date) > now - MARK_WINDOW,
                col(BoundaryMark.kind).is_(None),
            )
        ).all()
        for row in due:
            assert row.expiration_date is not None
            session.add(BoundaryMark(kind="override_expired", subject=row.id, at=row.expiration_date))
            record_event(
                session,
                "company.override.expired",
                cid,
                {
                    "override_id": row.id,
                    "feature_id": row.feature_id,
                    "expired_at": row.expiration_date.isoformat(),
                },
            )
        if due:
            session.flush()  # a concurrent run's mark fails here, before anything is published
            entitlements_changed(session, [cid])
        return bool(due)

    return _each_company(engine, rows, apply)


# ------------------------------------------------------------------ plan assignments


def _trial_due(now: dt.datetime) -> list[Any]:
    return [
        col(CompanyPlan.trial_end) <= now,
        col(CompanyPlan.source) != "billing",  # Stripe ends billing-driven trials itself
        func.coalesce(col(CompanyPlan.trial_status), "active") == "active",
    ]


def end_trials(engine: Engine, now: dt.datetime) -> int:
    with Session(engine) as session:
        ids = session.exec(select(CompanyPlan.company_id).where(*_trial_due(now))).all()

    def apply(session: Session, cid: str) -> bool:
        due = session.exec(
            select(CompanyPlan).where(col(CompanyPlan.company_id) == cid, *_trial_due(now)).with_for_update()
        ).all()
        if not due:
            return False
        settings = session.get(CatalogSettingsRow, 1)
        expiry_plan = settings.trial_expiry_plan_id if settings else None
        for row in due:
            assert row.trial_end is not None
            row.trial_status, row.updated_at = "expired", now
            session.add(row)
            record_event(
                session,
                "subscription.trial.ended",
                cid,
                {"plan_id": row.plan_id, "role": row.role, "trial_end": row.trial_end.isoformat()},
            )
        session.flush()
        rows = company_plan_rows(session, cid)
        base = next((r.plan_id for r in rows if r.role == "base"), None)
        ended = {r.plan_id for r in due}
        if base in ended:
            base = expiry_plan  # None: no base plan, the catalog's fallback plan applies
        add_ons = [r.plan_id for r in rows if r.role == "add_on" and r.plan_id not in ended]
        _set_plans(
            session,
            cid,
            base,
            add_ons,
            "trial_expired",
            source="trial_expiry",
            action="trial_expired",
            base_plan_action="trial_expiry",
        )
        entitlements_changed(session, [cid])
        return True

    return _each_company(engine, ids, apply)


def end_access(engine: Engine, now: dt.datetime) -> int:
    """Assignments whose ``access_until`` passed (cancel at period end) are removed."""
    with Session(engine) as session:
        ids = session.exec(select(CompanyPlan.company_id).where(col(CompanyPlan.access_until) <= now)).all()

    def apply(session: Session, cid: str) -> bool:
        rows = company_plan_rows(session, cid)
        ended = {r.plan_id for r in rows if r.access_until is not None and r.access_until <= now}
        if not ended:
            return False
        base = next((r.plan_id for r in rows if r.role == "base" and r.plan_id not in ended), None)
        add_ons = [r.plan_id for r in rows if r.role == "add_on" and r.plan_id not in ended]
        return _set_plans(session, cid, base, add_ons, "access_ended", action="access_ended") is not None

    return _each_company(engine, ids, apply)


def apply_downgrades(engine: Engine, now: dt.datetime) -> int:
    due = [col(ScheduledDowngrade.status) == "pending", col(ScheduledDowngrade.effective_after) <= now]
    with Session(engine) as session:
        ids = session.exec(select(ScheduledDowngrade.company_id).where(*due)).all()

    def apply(session: Session, cid: str) -> bool:
        pending = session.exec(
            select(ScheduledDowngrade)
            .where(col(ScheduledDowngrade.company_id) == cid, *due)
            .order_by(col(ScheduledDowngrade.effective_after))
            .with_for_update()
        ).all()
        for row in pending:
            rows = company_plan_rows(session, cid)
            current = next((r for r in rows if r.role == "base"), None)
            payload = {
                "scheduled_downgrade_id": row.id,
                "from_plan_id": row.from_plan_id,
                "to_plan_id": row.to_plan_id,
                "effective_after": row.effective_after.isoformat(),
            }
            if current is not None and current.plan_id == row.to_plan_id:
                row.status = "applied"  # Stripe's phase change arrived first (inbound sync)
            elif current is None or current.plan_id != row.from_plan_id:
                row.status = "canceled"  # the company changed plans since it was scheduled
            else:
                row.status = "applied"
                _set_plans(
                    session,
                    cid,
                    row.to_plan_id,
                    [r.plan_id for r in rows if r.role == "add_on"],
                    "scheduled_downgrade",
                    source=current.source,
                    action="scheduled_downgrade",
                    base_plan_action="downgrade",
                )
            session.add(row)
            record_event(session, "company.scheduled_downgrade", cid, {**payload, "status": row.status})
        return bool(pending)

    return _each_company(engine, ids, apply)


# ------------------------------------------------------------------ credits


def expire_credit_grants(engine: Engine, now: dt.datetime) -> int:
    due = [col(CreditGrant.expires_at) <= now, col(CreditGrant.zeroed_at).is_(None)]
    with Session(engine) as session:
        ids = session.exec(select(CreditGrant.company_id).where(*due)).all()

    def apply(session: Session, cid: str) -> bool:
        # A plan grant's expiry is its reset: issue the next period's grant (with rollover of
        # what is left) before the old one is zeroed.
        sync_plan_grants(session, cid, now)
        grants = session.exec(
            select(CreditGrant).where(col(CreditGrant.company_id) == cid, *due).with_for_update()
        ).all()
        for grant in grants:
            if grant.remaining:
                session.add(
                    CreditLedgerEntry(
                        company_id=cid,
                        credit_type_id=grant.credit_type_id,
                        grant_id=grant.id,
                        amount=-grant.remaining,
                        reason="expired",
                        created_at=now,
                    )
                )
            record_event(
                session,
                "company.credit_grant.expired",
                cid,
                {
                    "grant_id": grant.id,
                    "credit_type_id": grant.credit_type_id,
                    "expired_amount": grant.remaining,
                },
            )
            grant.remaining, grant.zeroed_at = 0.0, now
            session.add(grant)
        if grants:
            entitlements_changed(session, [cid])
        return bool(grants)

    return _each_company(engine, ids, apply)


# ------------------------------------------------------------------ everything


def apply_due(engine: Engine, now: dt.datetime) -> Counter[str]:
    """Apply every transition due at ``now``; counts of companies changed, by kind."""
    counts: Counter[str] = Counter()
    counts["override_expired"] = expire_overrides(engine, now)
    counts["trial_ended"] = end_trials(engine, now)
    counts["access_ended"] = end_access(engine, now)
    counts["downgrade_applied"] = apply_downgrades(engine, now)
    counts["credit_grant_expired"] = expire_credit_grants(engine, now)
    counts["metric_period_rolled"] = roll_metric_periods(engine, now)
    return +counts
