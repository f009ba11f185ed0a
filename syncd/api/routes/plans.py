"""``/plans``, ``/company-plans``: the SDK's ``plans`` client."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...billing.plan_change import ChangeRequest, change_plan, pushes_to_stripe
from ...services import companies, company_plans, plans
from ..auth import request_actor
from ..http import echo, ok, read_body, read_query, run_db
from ..schemas.base import reject_unsupported
from ..schemas.plans import (
    CreatePlanBody,
    GetPlanQuery,
    ListPlansQuery,
    UpdateCompanyPlansBody,
    UpdatePlanBody,
    UpsertBillingProductPlanBody,
)
from ..spec import operation
from ..views.companies import company_detail
from ..views.plans import billing_product_plan, plan_detail
from .billing import stripe_client


@operation(body=CreatePlanBody)
async def create_plan(request: Request) -> Response:
    body = await read_body(request, CreatePlanBody)
    actor = request_actor(request)

    def work(session: Session) -> dict[str, Any]:
        plan = plans.create_plan(
            session,
            name=body.name,
            plan_type=body.plan_type,
            description=body.description or "",
            icon=body.icon,
            actor=actor,
        )
        return plan_detail(session, plan)

    return ok(await run_db(request, work))


@operation(body=UpdatePlanBody)
async def update_plan(request: Request) -> Response:
    plan_id = request.path_params["plan_id"]
    body = await read_body(request, UpdatePlanBody)
    actor = request_actor(request)

    def work(session: Session) -> dict[str, Any]:
        plan = plans.update_plan(
            session, plan_id, name=body.name, description=body.description, icon=body.icon, actor=actor
        )
        return plan_detail(session, plan)

    return ok(await run_db(request, work))


@operation(query=GetPlanQuery)
async def get_plan(request: Request) -> Response:
    plan_id = request.path_params["plan_id"]
    query = read_query(request, GetPlanQuery)

    def work(session: Session) -> dict[str, Any]:
        plan = plans.get_plan(session, plan_id)
        if query.plan_version_id is not None:
            plans.require_version_of(session, plan, query.plan_version_id)
        return plan_detail(session, plan, version_id=query.plan_version_id)

    return ok(await run_db(request, work), echo(query))


@operation(response="deleted")
async def delete_plan(request: Request) -> Response:
    plan_id = request.path_params["plan_id"]
    actor = request_actor(request)

    def work(session: Session) -> None:
        plans.delete_plan(session, plan_id, actor=actor)

    await run_db(request, work)
    return ok({"deleted": True})


@operation(query=ListPlansQuery)
async def list_plans(request: Request) -> Response:
    query = read_query(request, ListPlansQuery)
    reject_unsupported(query)
    page = query.page()
    eligible = next(
        (
            name
            for name, flag in (
                ("initial", query.for_initial_plan),
                ("fallback", query.for_fallback_plan),
                ("trial_expiry", query.for_trial_expiry_plan),
            )
            if flag
        ),
        None,
    )

    def work(session: Session) -> list[dict[str, Any]]:
        if query.company_scoped_only:  # syncd has no company-scoped (custom) plans
            return []
        rows = plans.list_plans(
            session,
            ids=query.ids,
            plan_type=query.plan_type,
            q=query.q,
            company_id=query.company_id,
            has_product_id=query.has_product_id,
            with_published_version=query.with_published_version,
            without_entitlement_for=query.without_entitlement_for,
            exclude_unused=bool(query.exclude_unused),
            eligible_as=eligible,
            page=page,
        )
        return [plan_detail(session, p, with_entitlements=bool(query.with_entitlements)) for p in rows]

    return ok(await run_db(request, work), echo(query))


@operation(body=UpdateCompanyPlansBody, extra_statuses=(402, 409, 502))
async def update_company_plans(request: Request) -> Response:
    company_id = request.path_params["company_id"]
    body = await read_body(request, UpdateCompanyPlansBody)
    actor = request_actor(request)

    def work(session: Session) -> dict[str, Any]:
        companies.get_company(session, company_id)
        stripe_on = bool(request.app.state.daemon.stripe_api_key)  # no Stripe: local only
        if (
            stripe_on
            and body.base_plan_id is not None
            and pushes_to_stripe(session, company_id, body.base_plan_id)
        ):
            # Stripe-linked: Stripe first, then the local plan (syncd.billing).
            change = ChangeRequest(plan=body.base_plan_id, add_ons=body.add_on_ids, actor=actor)
            change_plan(session, stripe_client(request), company_id, change)
        else:
            company_plans.update_company_plans(
                session, company_id, base_plan_id=body.base_plan_id, add_on_ids=body.add_on_ids, actor=actor
            )
        return company_detail(session, companies.get_company(session, company_id))

    return ok(await run_db(request, work))


@operation(body=UpsertBillingProductPlanBody)
async def upsert_billing_product_plan(request: Request) -> Response:
    plan_id = request.path_params["plan_id"]
    body = await read_body(request, UpsertBillingProductPlanBody)
    reject_unsupported(body)
    link = body.to_input()
    actor = request_actor(request)

    def work(session: Session) -> dict[str, Any]:
        plan = plans.upsert_billing_product_plan(session, plan_id, link, actor=actor)
        return billing_product_plan(session, plan)

    return ok(await run_db(request, work))


routes = [
    Route("/plans", create_plan, methods=["POST"]),
    Route("/plans", list_plans, methods=["GET"]),
    Route("/plans/{plan_id}", get_plan, methods=["GET"]),
    Route("/plans/{plan_id}", update_plan, methods=["PUT"]),
    Route("/plans/{plan_id}", delete_plan, methods=["DELETE"]),
    Route("/plans/{plan_id}/billing_products", upsert_billing_product_plan, methods=["PUT"]),
    Route("/company-plans/{company_id}", update_company_plans, methods=["PUT"]),
]
