"""``/plan-entitlements``, ``/company-overrides``: the SDK's ``entitlements`` client."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...services import entitlements, overrides
from ..auth import request_actor
from ..http import echo, ok, read_body, read_query, run_db
from ..schemas.base import merge, reject_unsupported
from ..schemas.entitlements import (
    CreateCompanyOverrideBody,
    CreatePlanEntitlementBody,
    ListCompanyOverridesQuery,
    ListPlanEntitlementsQuery,
    UpdateCompanyOverrideBody,
    UpdatePlanEntitlementBody,
)
from ..spec import operation
from ..views.entitlements import override_view, plan_entitlement_view


@operation(body=CreatePlanEntitlementBody)
async def create_plan_entitlement(request: Request) -> Response:
    body = await read_body(request, CreatePlanEntitlementBody)
    reject_unsupported(body)
    actor = request_actor(request)

    def work(session: Session) -> dict[str, Any]:
        row = entitlements.create_plan_entitlement(
            session,
            plan_id=body.plan_id,
            feature_id=body.feature_id,
            value=body.to_value(),
            plan_version_id=body.plan_version_id,
            price_behavior=body.price_behavior,
            actor=actor,
        )
        return plan_entitlement_view(session, row)

    return ok(await run_db(request, work))


@operation(body=UpdatePlanEntitlementBody)
async def update_plan_entitlement(request: Request) -> Response:
    entitlement_id = request.path_params["plan_entitlement_id"]
    body = await read_body(request, UpdatePlanEntitlementBody)
    reject_unsupported(body)
    actor = request_actor(request)

    def work(session: Session) -> dict[str, Any]:
        row = entitlements.update_plan_entitlement(
            session, entitlement_id, value=body.to_value(), price_behavior=body.price_behavior, actor=actor
        )
        return plan_entitlement_view(session, row)

    return ok(await run_db(request, work))


@operation()
async def get_plan_entitlement(request: Request) -> Response:
    entitlement_id = request.path_params["plan_entitlement_id"]

    def work(session: Session) -> dict[str, Any]:
        return plan_entitlement_view(session, entitlements.get_plan_entitlement(session, entitlement_id))

    return ok(await run_db(request, work))


@operation(response="deleted")
async def delete_plan_entitlement(request: Request) -> Response:
    entitlement_id = request.path_params["plan_entitlement_id"]
    actor = request_actor(request)

    def work(session: Session) -> None:
        entitlements.delete_plan_entitlement(session, entitlement_id, actor=actor)

    await run_db(request, work)
    return ok({"deleted": True})


@operation(query=ListPlanEntitlementsQuery)
async def list_plan_entitlements(request: Request) -> Response:
    query = read_query(request, ListPlanEntitlementsQuery)
    page = query.page()

    def work(session: Session) -> list[dict[str, Any]]:
        rows = entitlements.list_plan_entitlements(
            session,
            ids=query.ids,
            feature_ids=merge(query.feature_id, query.feature_ids),
            plan_ids=merge(query.plan_id, query.plan_ids),
            plan_version_ids=merge(query.plan_version_id, query.plan_version_ids),
            q=query.q,
            page=page,
        )
        return [plan_entitlement_view(session, r) for r in rows]

    return ok(await run_db(request, work), echo(query))


@operation(body=CreateCompanyOverrideBody)
async def create_company_override(request: Request) -> Response:
    body = await read_body(request, CreateCompanyOverrideBody)
    reject_unsupported(body)
    actor = request_actor(request)

    def work(session: Session) -> dict[str, Any]:
        row = overrides.create_company_override(
            session,
            company_id=body.company_id,
            feature_id=body.feature_id,
            value=body.to_value(),
            expiration_date=body.expiration_date,
            note=body.note,
            actor=actor,
        )
        return override_view(session, row)

    return ok(await run_db(request, work))


@operation(body=UpdateCompanyOverrideBody)
async def update_company_override(request: Request) -> Response:
    override_id = request.path_params["company_override_id"]
    body = await read_body(request, UpdateCompanyOverrideBody)
    reject_unsupported(body)
    actor = request_actor(request)

    def work(session: Session) -> dict[str, Any]:
        row = overrides.update_company_override(
            session,
            override_id,
            value=body.to_value(),
            expiration_date=body.expiration_date,
            note=body.note,
            actor=actor,
        )
        return override_view(session, row)

    return ok(await run_db(request, work))


@operation()
async def get_company_override(request: Request) -> Response:
    override_id = request.path_params["company_override_id"]

    def work(session: Session) -> dict[str, Any]:
        return override_view(session, overrides.get_company_override(session, override_id))

    return ok(await run_db(request, work))


@operation(response="deleted")
async def delete_company_override(request: Request) -> Response:
    override_id = request.path_params["company_override_id"]
    actor = request_actor(request)

    def work(session: Session) -> None:
        overrides.delete_company_override(session, override_id, actor=actor)

    await run_db(request, work)
    return ok({"deleted": True})


@operation(query=ListCompanyOverridesQuery)
async def list_company_overrides(request: Request) -> Response:
    query = read_query(request, ListCompanyOverridesQuery)
    page = query.page()

    def work(session: Session) -> list[dict[str, Any]]:
        rows = overrides.list_company_overrides(
            session,
            ids=query.ids,
            company_ids=merge(query.company_id, query.company_ids),
            feature_ids=merge(query.feature_id, query.feature_ids),
            without_expired=query.without_expired,
            q=query.q,
            page=page,
        )
        companies: dict[str, dict[str, Any]] = {}
        return [override_view(session, r, companies) for r in rows]

    return ok(await run_db(request, work), echo(query))


routes = [
    Route("/plan-entitlements", create_plan_entitlement, methods=["POST"]),
    Route("/plan-entitlements", list_plan_entitlements, methods=["GET"]),
    Route("/plan-entitlements/{plan_entitlement_id}", get_plan_entitlement, methods=["GET"]),
    Route("/plan-entitlements/{plan_entitlement_id}", update_plan_entitlement, methods=["PUT"]),
    Route("/plan-entitlements/{plan_entitlement_id}", delete_plan_entitlement, methods=["DELETE"]),
    Route("/company-overrides", create_company_override, methods=["POST"]),
    Route("/company-overrides", list_company_overrides, methods=["GET"]),
    Route("/company-overrides/{company_override_id}", get_company_override, methods=["GET"]),
    Route("/company-overrides/{company_override_id}", update_company_override, methods=["PUT"]),
    Route("/company-overrides/{company_override_id}", delete_company_override, methods=["DELETE"]),
]
