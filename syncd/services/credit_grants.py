"""Credit grants made by people: purchased, adjustment and free grants, listing, zeroing out.

Plan grants are issued by :mod:`.credits` when plans change; this module is the operator's
side (API ``/billing/credits/grants/...`` and ``syncd credits ...``). Every change is audited,
goes through the credit ledger, and marks the company's entitlements changed so balances
and credit conditions are recomputed at once.
"""

from __future__ import annotations

import datetime as dt

from sqlmodel import Session, col, func, select

from ..engine.credits import LedgerEntry
from ..exceptions import ConflictError, ValidationError
from ..models import Company, CreditGrant
from .audit import SYSTEM, Actor, record, snapshot
from .changes import entitlements_changed
from .common import FIRST_PAGE, Page, require
from .credits import GRANT_REASONS, grant_credits, write_ledger

ZERO_OUT_REASONS = ("manual", "customer_archived", "reconciled", "expired")
MAX_GRANT = 1_000_000_000_000


def grant_to_company(
    session: Session,
    *,
    company_id: str,
    credit_id: str,
    quantity: float,
    reason: str,
    now: dt.datetime,
    expires_at: dt.datetime | None = None,
    actor: Actor = SYSTEM,
) -> CreditGrant:
    """A purchased / adjustment / free grant of ``quantity`` credits to one company."""
    if reason not in GRANT_REASONS:
        raise ValidationError(
            f"reason must be one of {', '.join(GRANT_REASONS)} (plan grants come from plans)",
            code="invalid_grant_reason",
            reason=reason,
        )
    if not 0 < quantity <= MAX_GRANT:
        raise ValidationError(
            f"quantity must be positive and at most {MAX_GRANT}", code="invalid_quantity", quantity=quantity
        )
    if expires_at is not None and expires_at <= now:
        raise ValidationError("expires_at must be in the future", code="invalid_expires_at")
    require(session, Company, company_id, "company")
    row = grant_credits(session, company_id, credit_id, quantity, reason, now, expires_at)
    record(session, actor, "credit_grant.created", "credit_grant", row.id, after=snapshot(row))
    return row


def list_company_grants(
    session: Session, company_id: str, page: Page = FIRST_PAGE, *, include_zeroed: bool = True
) -> list[CreditGrant]:
    """A company's grants, newest first."""
    query = select(CreditGrant).where(col(CreditGrant.company_id) == company_id)
    if not include_zeroed:
        query = query.where(col(CreditGrant.zeroed_at).is_(None))
    query = query.order_by(col(CreditGrant.granted_at).desc(), col(CreditGrant.id))
    return list(session.exec(query.offset(page.offset).limit(page.limit)).all())


def count_company_grants(session: Session, company_id: str) -> int:
    query = select(func.count()).select_from(CreditGrant).where(col(CreditGrant.company_id) == company_id)
    return int(session.exec(query).one())


def zero_out_grant(
    session: Session, grant_id: str, *, now: dt.datetime, reason: str = "manual", actor: Actor = SYSTEM
) -> CreditGrant:
    """Remove what is left of a grant (it stays listed, with the date and reason)."""
    if reason not in ZERO_OUT_REASONS:
        raise ValidationError(
            f"reason must be one of {', '.join(ZERO_OUT_REASONS)}", code="invalid_zero_out_reason"
        )
    row = require(session, CreditGrant, grant_id, "credit grant")
    if row.zeroed_at is not None:
        raise ConflictError(f"credit grant {grant_id!r} is already zeroed out", code="grant_already_zeroed")
    before = snapshot(row)
    left = row.remaining
    row.remaining, row.zeroed_at, row.zeroed_reason = 0.0, now, reason
    session.add(row)
    if left:
        write_ledger(
            session, [LedgerEntry(row.company_id, row.credit_type_id, row.id, left, "zero_out", now)]
        )
    record(
        session, actor, "credit_grant.zeroed_out", "credit_grant", row.id, before=before, after=snapshot(row)
    )
    entitlements_changed(session, [row.company_id])
    return row
