"""Native plan-change endpoints that push to Stripe (``syncd.billing``).

``POST /companies/{company_id}/plan-change`` classifies the change, pushes it to Stripe and
answers with the company; a declined card is a 402 with the decline reason, a conflicting
purchase while a downgrade is scheduled a 409, and nothing changes locally on any error.
"""

from __future__ import annotations

from typing import Any, Literal

import stripe
from sqlmodel import Session
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...billing import downgrades
from ...billing.plan_change import ChangeRequest, change_plan
from ...exceptions import NotFoundError, ValidationError
from ...services import companies
from ...stripe_api import build_client
from ..auth import request_actor
from ..http import ok, read_body, run_db
from ..schemas.base import Body
from ..spec import operation
from ..views.companies import company_detail


class PlanChangeBody(Body):
    plan_id: str
    add_on_ids: list[str] | None = None
    timing: Literal["now", "period_end"] | None = None
    proration_behavior: Literal["create_prorations", "always_invoice", "none"] | None = None
    require_payment: bool = True
    force: bool = False


def stripe_client(request: Request) -> stripe.StripeClient:
    """One paced client per app (the daemon knows the key and base, emulator included)."""
    state = request.app.state
    client: stripe.StripeClient | None = getattr(state, "billing_stripe_client", None)
    if client is None:
        daemon = state.daemon
        if not daemon.stripe_api_key:
            raise ValidationError("Stripe is not configured", code="stripe_not_configured")
        client, _ = build_client(
            daemon.settings, api_key=daemon.stripe_api_key, api_base=daemon.stripe_api_base
        )
        state.billing_stripe_client = client
    return client


@operation(body=PlanChangeBody, extra_statuses=(400, 402, 403, 404, 409, 502))
async def plan_change(request: Request) -> Response:
    company_id = request.path_params["company_id"]
    body = await read_body(request, PlanChangeBody)
    actor = request_actor(request)
    client = stripe_client(request)

    def work(session: Session) -> dict[str, Any]:
        companies.get_company(session, company_id)
        outcome = change_plan(
            session,
            client,
            company_id,
            ChangeRequest(
                plan=body.plan_id,
                add_ons=body.add_on_ids,
                timing=body.timing,
                proration_behavior=body.proration_behavior,
                require_payment=body.require_payment,
                force=body.force,
                actor=actor,
            ),
        )
        return {
            "change": outcome.as_dict(),
            "company": company_detail(session, companies.get_company(session, company_id)),
        }

    return ok(await run_db(request, work))


@operation(extra_statuses=(400, 404, 502))
async def cancel_scheduled_downgrade(request: Request) -> Response:
    company_id = request.path_params["company_id"]
    actor = request_actor(request)
    client = stripe_client(request)

    def work(session: Session) -> dict[str, Any]:
        row = downgrades.pending(session, company_id)
        if row is None:
            raise NotFoundError("no scheduled downgrade", code="scheduled_downgrade_not_found")
        downgrades.cancel(session, client, row, actor)
        return company_detail(session, companies.get_company(session, company_id))

    return ok(await run_db(request, work))


routes = [
    Route("/companies/{company_id}/plan-change", plan_change, methods=["POST"]),
    Route("/companies/{company_id}/scheduled-downgrade", cancel_scheduled_downgrade, methods=["DELETE"]),
]
