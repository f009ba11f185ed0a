"""Plan audiences: rule-based base-plan assignment for companies not billed through Stripe.

A plan's ``audience`` is a list of rules-engine conditions (wire shape, AND-ed). A company
whose base plan is not driven by billing or set by hand gets the first plan, by descending
``audience_priority`` (then key), whose audience its current state matches; when it matches
none any more, an audience-assigned base plan is removed (the catalog's fallback applies).
Conditions are evaluated by the engine itself on the company's wire model, so an audience
means exactly what the same conditions mean in a flag rule.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from ..db import session_scope
from ..engine import wire
from ..engine.conditions import EngineError, rule_matches
from ..models import Company, CompanyPlan, Plan
from .company_plans import company_plan_rows, update_company_plans

log = structlog.get_logger(__name__)

# Base plans that audiences never replace: Stripe's, and those an operator assigned by hand.
STICKY_SOURCES = frozenset({"billing", "manual"})

Loader = Callable[[Session, Sequence[str] | None, dt.datetime], dict[str, wire.Company]]


def default_loader() -> Loader:
    """``syncd.state.load_companies``: the same DB -> wire resolution the engine serves from."""
    from ..state import load_companies

    return load_companies


@dataclass(frozen=True, slots=True)
class Audience:
    plan_id: str
    plan_key: str
    priority: int
    rule: wire.Rule


def load_audiences(session: Session) -> list[Audience]:
    """Base plans with an audience, in the order they are tried."""
    plans = session.exec(select(Plan).where(col(Plan.plan_type) == "plan")).all()
    out = [
        Audience(
            p.id,
            p.key,
            p.audience_priority,
            wire.Rule(
                id=f"audience_{p.id}",
                rule_type="standard",
                value=True,
                conditions=[wire.Condition.from_wire(c) for c in p.audience],
            ),
        )
        for p in plans
        if p.audience
    ]
    return sorted(out, key=lambda a: (-a.priority, a.plan_key))


def matching_plan(audiences: Sequence[Audience], company: wire.Company) -> str | None:
    for audience in audiences:
        try:
            if rule_matches(audience.rule, company, None, None):
                return audience.plan_id
        except EngineError as exc:  # an invalid condition: the audience never matches
            log.warning("audience_invalid", plan=audience.plan_key, error=str(exc))
    return None


def eligible_companies(session: Session, company_ids: Sequence[str] | None) -> list[str]:
    """Companies whose base plan an audience may set (none of their assignments is sticky)."""
    sticky = select(CompanyPlan.company_id).where(col(CompanyPlan.source).in_(STICKY_SOURCES))
    query = select(Company.id).where(col(Company.id).not_in(sticky))
    if company_ids is not None:
        query = query.where(col(Company.id).in_(list(company_ids)))
    return sorted(session.exec(query).all())


def evaluate_company(session: Session, company: wire.Company, audiences: Sequence[Audience]) -> bool:
    """Apply the audiences to one company inside ``session``; returns whether it changed."""
    rows = company_plan_rows(session, company.id)
    if any(r.source in STICKY_SOURCES for r in rows):
        return False
    base = next((r for r in rows if r.role == "base"), None)
    target = matching_plan(audiences, company)
    if target is None:
        if base is None or base.source != "audience":
            return False  # nothing of ours to take back
    elif base is not None and base.plan_id == target:
        return False
    change = update_company_plans(
        session,
        company.id,
        base_plan_id=target,
        add_on_ids=[r.plan_id for r in rows if r.role == "add_on"],
        source="audience",
        action="audience",
        base_plan_action="audience" if target else "audience_removed",
        reason="audience",
    )
    return change is not None  # update_company_plans recorded company.plan_changed


BATCH = 500


def reevaluate(engine: Engine, company_ids: Sequence[str] | None, now: dt.datetime, load: Loader) -> int:
    """Re-evaluate the audiences of these companies (None: all); one transaction per change."""
    with Session(engine) as session:
        audiences = load_audiences(session)
        has_audience_plans = bool(
            session.exec(select(CompanyPlan.id).where(col(CompanyPlan.source) == "audience")).first()
        )
        if not audiences and not has_audience_plans:
            return 0
        eligible = eligible_companies(session, company_ids)
    changed = 0
    for i in range(0, len(eligible), BATCH):
        with Session(engine) as session:
            companies = load(session, eligible[i : i + BATCH], now)
        for company in companies.values():
            try:
                with session_scope(engine) as session:
                    changed += evaluate_company(session, company, audiences)
            except Exception:
                log.exception("audience_evaluation_failed", company_id=company.id)
    if changed:
        log.info("audiences_applied", companies=changed)
    return changed
