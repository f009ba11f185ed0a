"""``syncd companies change-plan | show``: plan changes from the command line (an admin)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from ..config import Settings
from ..db import session_scope
from ..exceptions import NotFoundError
from ..models import Company, CompanyKey
from ..services.audit import Actor
from ..services.company_plans import company_plan_rows
from ..stripe_sync.cli import stripe_client
from . import downgrades
from .plan_change import ChangeRequest, change_plan


def resolve_company(session: Session, ident: str) -> str:
    """A company id from its id or any of its key values (e.g. the Stripe customer id)."""
    if session.get(Company, ident) is not None:
        return ident
    found = session.exec(select(CompanyKey.company_id).where(col(CompanyKey.value) == ident)).all()
    if len(set(found)) == 1:
        return found[0]
    raise NotFoundError(f"company {ident!r} not found", code="company_not_found")


def add_parsers(sub: Any) -> None:
    companies = sub.add_parser("companies", help="companies: plan changes pushed to Stripe")
    cmds = companies.add_subparsers(dest="companies_command", required=True)
    change = cmds.add_parser("change-plan", help="change a company's plan in Stripe, then locally")
    change.add_argument("company", help="company id or key value (e.g. its stripe_customer_id)")
    change.add_argument("--plan", required=True, help="base plan key or id")
    change.add_argument("--add-on", action="append", dest="add_ons", help="add-on key or id (repeatable)")
    change.add_argument("--no-add-ons", action="store_true", help="remove every add-on")
    when = change.add_mutually_exclusive_group()
    when.add_argument("--at-period-end", action="store_const", const="period_end", dest="timing")
    when.add_argument("--now", action="store_const", const="now", dest="timing")
    change.add_argument("--proration", choices=["create_prorations", "always_invoice", "none"])
    change.add_argument("--allow-incomplete", action="store_true", help="do not require the payment first")
    change.add_argument("--force", action="store_true", help="downgrade even when over the new limits")
    show = cmds.add_parser("show", help="a company's plans and pending downgrade, as JSON")
    show.add_argument("company")
    cancel = cmds.add_parser("cancel-downgrade", help="cancel a scheduled downgrade")
    cancel.add_argument("company")


def run(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    actor = Actor("cli")
    command = args.companies_command
    with session_scope(engine) as session:
        company_id = resolve_company(session, args.company)
        if command == "show":
            print(json.dumps(_show(session, company_id), indent=2, default=str))
            return 0
        client = stripe_client(settings)
        if command == "cancel-downgrade":
            row = downgrades.pending(session, company_id)
            if row is None:
                raise NotFoundError("no scheduled downgrade", code="scheduled_downgrade_not_found")
            downgrades.cancel(session, client, row, actor)
            print(f"canceled scheduled downgrade {row.id}")
            return 0
        outcome = change_plan(
            session,
            client,
            company_id,
            ChangeRequest(
                plan=args.plan,
                add_ons=[] if args.no_add_ons else args.add_ons,
                timing=args.timing,
                proration_behavior=args.proration,
                require_payment=not args.allow_incomplete,
                force=args.force,
                actor=actor,
            ),
        )
    print(json.dumps(outcome.as_dict(), indent=2, default=str))
    return 0


def _show(session: Session, company_id: str) -> dict[str, Any]:
    rows = company_plan_rows(session, company_id)
    return {
        "company_id": company_id,
        "plans": [
            {
                "plan_id": r.plan_id,
                "role": r.role,
                "source": r.source,
                "subscription": r.stripe_subscription_id,
            }
            for r in rows
        ],
        "scheduled_downgrade": downgrades.view(downgrades.pending(session, company_id)),
    }
