"""Credit grants and consumption, persisted: the database side of ``syncd.engine.credits``.

The engine's pure functions decide (reset times, rollover, burn order); this module loads a
company's grants, hands them over, and writes back the new remaining balances and ledger
entries in the caller's transaction.

- :func:`sync_plan_grants` issues the plan grants of every plan version the company is on,
  and at each reset a fresh grant plus the configured rollover. Idempotent: call it whenever
  plans change or a reset may be due.
- :func:`grant_credits` adds a purchased / adjustment / free grant.
- :func:`consume_credits` burns credits for tracked usage of a credit-priced feature.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence

from sqlmodel import Session, col, select

from ..engine import credits as engine
from ..models import CompanyPlan, CreditGrant, CreditLedgerEntry, CreditType, PlanCreditGrant, new_id
from .changes import entitlements_changed
from .common import require

GRANT_REASONS = ("purchased", "adjustment", "free")


def _to_engine(row: CreditGrant) -> engine.CreditGrant:
    return engine.CreditGrant(
        row.id,
        row.company_id,
        row.credit_type_id,
        row.reason,
        row.amount,
        row.granted_at,
        row.expires_at,
        row.remaining,
        row.source_grant_id,
    )


def write_ledger(
    session: Session, entries: Sequence[engine.LedgerEntry], usage_event_id: int | None = None
) -> None:
    for e in entries:
        session.add(
            CreditLedgerEntry(
                company_id=e.company_id,
                credit_type_id=e.credit_id,
                grant_id=e.grant_id,
                amount=e.amount,
                reason=e.reason,
                usage_event_id=usage_event_id,
                created_at=e.at,
            )
        )


def _add_grant(session: Session, grant: engine.CreditGrant, plan_credit_grant_id: str | None = None) -> None:
    session.add(
        CreditGrant(
            id=grant.id,
            company_id=grant.company_id,
            credit_type_id=grant.credit_id,
            reason=grant.reason,
            amount=grant.amount,
            remaining=grant.balance,
            source_grant_id=grant.source_grant_id,
            plan_credit_grant_id=plan_credit_grant_id,
            granted_at=grant.granted_at,
            expires_at=grant.expires_at,
        )
    )


def _grants(session: Session, company_id: str) -> list[CreditGrant]:
    return list(
        session.exec(
            select(CreditGrant)
            .where(col(CreditGrant.company_id) == company_id, col(CreditGrant.zeroed_at).is_(None))
            .order_by(col(CreditGrant.granted_at), col(CreditGrant.id))
        ).all()
    )


def sync_plan_grants(session: Session, company_id: str, now: dt.datetime) -> int:
    """Issue due plan grants; zero the plan grants of plans the company left. Returns grants issued."""
    plans = session.exec(select(CompanyPlan).where(col(CompanyPlan.company_id) == company_id)).all()
    configs = {
        g.id: (g, plan)
        for plan in plans
        for g in session.exec(
            select(PlanCreditGrant).where(col(PlanCreditGrant.plan_version_id) == plan.plan_version_id)
        ).all()
    }
    issued = 0
    grants = _grants(session, company_id)
    for row in grants:
        if row.reason in ("plan", "rollover") and row.plan_credit_grant_id not in configs:
            row.remaining, row.zeroed_at = 0.0, now  # the plan is gone, and its credits with it
            session.add(row)
    for pcg_id, (pcg, plan) in configs.items():
        latest = max(
            (g for g in grants if g.plan_credit_grant_id == pcg_id and g.reason == "plan"),
            key=lambda g: g.granted_at,
            default=None,
        )
        if latest is not None and (latest.expires_at is None or latest.expires_at > now):
            continue  # the current period's grant exists
        config = engine.PlanCreditConfig(
            pcg.credit_type_id,
            pcg.credit_amount,
            pcg.reset_type,
            pcg.reset_cadence or "monthly",
            pcg.reset_start,
            int(pcg.rollover_percentage),
        )
        new, ledger = issue_plan_grant_rows(config, company_id, plan.created_at, now, latest)
        for grant in new:
            _add_grant(session, grant, plan_credit_grant_id=pcg_id)
        write_ledger(session, ledger)
        issued += 1
    if issued:
        entitlements_changed(session, [company_id])
    return issued


def issue_plan_grant_rows(
    config: engine.PlanCreditConfig,
    company_id: str,
    anchor: dt.datetime,
    now: dt.datetime,
    previous: CreditGrant | None,
) -> tuple[list[engine.CreditGrant], list[engine.LedgerEntry]]:
    return engine.issue_plan_grant(
        config, company_id, new_id("bcgr"), anchor, now, None if previous is None else _to_engine(previous)
    )


def grant_credits(
    session: Session,
    company_id: str,
    credit_type_id: str,
    amount: float,
    reason: str,
    now: dt.datetime,
    expires_at: dt.datetime | None = None,
) -> CreditGrant:
    credit = require(session, CreditType, credit_type_id, "credit")
    row = CreditGrant(
        company_id=company_id,
        credit_type_id=credit.id,
        reason=reason,
        amount=amount,
        remaining=amount,
        granted_at=now,
        expires_at=expires_at,
    )
    session.add(row)
    session.flush()
    write_ledger(session, [engine.LedgerEntry(company_id, credit.id, row.id, -amount, "grant", now)])
    entitlements_changed(session, [company_id])
    return row


def consume_credits(
    session: Session,
    company_id: str,
    credit_type_id: str,
    quantity: float,
    consumption_rate: float,
    now: dt.datetime,
) -> None:
    """Burn ``quantity * consumption_rate`` credits in the credit type's burn order."""
    credit = session.get(CreditType, credit_type_id)
    strategy = credit.burn_strategy if credit else engine.DEFAULT_STRATEGY
    rows = _grants(session, company_id)
    by_id = {r.id: r for r in rows}
    before = [_to_engine(r) for r in rows]
    # One adjustment grant per company and credit type holds refunds (negative usage).
    adjustment_id = "bcgr_" + hashlib.sha256(f"{company_id}:{credit_type_id}".encode()).hexdigest()[:22]
    after, ledger = engine.consume(
        before,
        company_id,
        credit_type_id,
        quantity,
        now,
        consumption_rate=consumption_rate,
        strategy=strategy,
        adjustment_id=adjustment_id,
    )
    for grant in after:
        row = by_id.get(grant.id)
        if row is None:  # a refund created the adjustment grant
            _add_grant(session, grant)
        elif row.remaining != grant.balance or row.expires_at != grant.expires_at:
            row.remaining, row.amount, row.expires_at = grant.balance, grant.amount, grant.expires_at
            session.add(row)
    write_ledger(session, ledger)
    entitlements_changed(session, [company_id])
