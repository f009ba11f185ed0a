"""``syncd credits``: grant, list and zero out a company's credits from the command line.

A company is named by its id (``comp_...``) or one of its keys (``account=acme``); a credit
type by its catalog key or id.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from typing import Any

from sqlmodel import Session, col, or_, select

from .config import Settings
from .exceptions import NotFoundError
from .models import CreditType, utcnow


def register(sub: Any, prepared_engine: Any) -> None:
    """Add the ``credits`` command group to the top-level subparsers."""
    credits = sub.add_parser("credits", help="company credit grants").add_subparsers(
        dest="credits_command", required=True
    )
    grant = credits.add_parser("grant", help="grant purchased / adjustment / free credits to a company")
    grant.add_argument("company", help="company id (comp_...) or key=value")
    grant.add_argument("credit", help="credit type key or id")
    grant.add_argument("quantity", type=int)
    grant.add_argument("--reason", default="adjustment", choices=("purchased", "adjustment", "free"))
    grant.add_argument("--expires-at", type=_when, metavar="ISO8601", help="the grant expires then")
    grant.set_defaults(handler=lambda a, s: cmd_grant(a, s, prepared_engine(s)))
    listing = credits.add_parser("list", help="a company's grants, newest first (JSON lines)")
    listing.add_argument("company", help="company id (comp_...) or key=value")
    listing.set_defaults(handler=lambda a, s: cmd_list(a, s, prepared_engine(s)))
    zero = credits.add_parser("zero-out", help="remove what is left of a grant")
    zero.add_argument("grant_id", help="bcgr_...")
    zero.add_argument("--reason", default="manual", choices=("manual", "customer_archived", "reconciled"))
    zero.set_defaults(handler=lambda a, s: cmd_zero_out(a, s, prepared_engine(s)))


def _when(value: str) -> dt.datetime:
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _company_id(session: Session, ref: str) -> str:
    from .services import keys as entity_keys

    key, sep, value = ref.partition("=")
    wanted = {key: value} if sep else {"id": ref}
    found = entity_keys.resolve(session, entity_keys.COMPANY_KEYS, wanted)
    if found is None:
        raise NotFoundError(f"no company with {ref!r}", code="company_not_found")
    return found


def _credit_id(session: Session, ref: str) -> str:
    found = session.exec(
        select(CreditType.id).where(or_(col(CreditType.key) == ref, col(CreditType.id) == ref))
    ).first()
    if found is None:
        raise NotFoundError(f"no credit type {ref!r}", code="credit_not_found")
    return found


def _line(row: Any) -> str:
    return json.dumps(
        {
            "id": row.id,
            "credit": row.credit_type_id,
            "reason": row.reason,
            "amount": row.amount,
            "remaining": row.remaining,
            "expires_at": row.expires_at.isoformat() if row.expires_at else None,
            "zeroed_at": row.zeroed_at.isoformat() if row.zeroed_at else None,
        }
    )


def cmd_grant(args: argparse.Namespace, settings: Settings, engine: Any) -> int:
    from .db import session_scope
    from .services.audit import Actor
    from .services.credit_grants import grant_to_company

    with session_scope(engine) as session:
        row = grant_to_company(
            session,
            company_id=_company_id(session, args.company),
            credit_id=_credit_id(session, args.credit),
            quantity=args.quantity,
            reason=args.reason,
            expires_at=args.expires_at,
            now=utcnow(),
            actor=Actor("cli"),
        )
        print(_line(row))
    return 0


def cmd_list(args: argparse.Namespace, settings: Settings, engine: Any) -> int:
    from .services.common import Page
    from .services.credit_grants import list_company_grants

    with Session(engine) as session:
        for row in list_company_grants(session, _company_id(session, args.company), Page(limit=250)):
            print(_line(row))
    return 0


def cmd_zero_out(args: argparse.Namespace, settings: Settings, engine: Any) -> int:
    from .db import session_scope
    from .services.audit import Actor
    from .services.credit_grants import zero_out_grant

    with session_scope(engine) as session:
        print(
            _line(
                zero_out_grant(session, args.grant_id, now=utcnow(), reason=args.reason, actor=Actor("cli"))
            )
        )
    return 0
