"""``/companies``, ``/company-traits``: the SDK's ``companies`` client (company half)."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...services import companies
from ..auth import request_actor
from ..http import echo, lookup_keys, ok, read_body, read_query, run_db
from ..schemas.base import merge, reject_unsupported
from ..schemas.companies import (
    DeleteCompanyQuery,
    ListCompaniesQuery,
    UpsertCompanyBody,
    UpsertCompanyTraitBody,
)
from ..spec import operation
from ..views.companies import company_detail


@operation(body=UpsertCompanyBody)
async def upsert_company(request: Request) -> Response:
    body = await read_body(request, UpsertCompanyBody)
    actor = request_actor(request)

    def work(session: Session) -> dict[str, Any]:
        company, _ = companies.upsert_company(
            session,
            keys=body.keys,
            name=body.name,
            traits=body.traits,
            company_id=body.id,
            last_seen_at=body.last_seen_at,
            remove_keys=body.remove_keys or (),
            prevent_key_remap=bool(body.prevent_key_remap),
            update_only=bool(body.update_only),
            base_plan_id=body.base_plan_id,
            actor=actor,
        )
        return company_detail(session, company)

    return ok(await run_db(request, work))


@operation(body=UpsertCompanyTraitBody)
async def upsert_company_trait(request: Request) -> Response:
    body = await read_body(request, UpsertCompanyTraitBody)
    actor = request_actor(request)

    def work(session: Session) -> dict[str, Any]:
        company = companies.upsert_company_trait(
            session,
            keys=body.keys,
            trait=body.trait,
            set_value=body.set,
            incr=body.incr,
            update_only=bool(body.update_only),
            actor=actor,
        )
        return company_detail(session, company)

    return ok(await run_db(request, work))


@operation()
async def get_company(request: Request) -> Response:
    company_id = request.path_params["company_id"]

    def work(session: Session) -> dict[str, Any]:
        return company_detail(session, companies.get_company(session, company_id))

    return ok(await run_db(request, work))


@operation(lookup_keys="keys")
async def lookup_company(request: Request) -> Response:
    keys = lookup_keys(request)

    def work(session: Session) -> dict[str, Any]:
        return company_detail(session, companies.lookup_company(session, keys))

    return ok(await run_db(request, work), {"keys": keys})


@operation(query=ListCompaniesQuery)
async def list_companies(request: Request) -> Response:
    query = read_query(request, ListCompaniesQuery)
    reject_unsupported(query)
    page = query.page()

    def work(session: Session) -> list[dict[str, Any]]:
        rows = companies.list_companies(
            session,
            ids=query.ids,
            plan_ids=merge(query.plan_id, query.plan_ids),
            plan_version_ids=merge(query.plan_version_id, query.plan_version_ids),
            q=query.q,
            without_plan=query.without_plan,
            with_subscription=query.with_subscription,
            without_subscription=query.without_subscription,
            has_scheduled_downgrade=query.has_scheduled_downgrade,
            with_entitlement_for=query.with_entitlement_for,
            without_feature_override_for=query.without_feature_override_for,
            page=page,
        )
        return [company_detail(session, c) for c in rows]

    return ok(await run_db(request, work), echo(query))


@operation(query=DeleteCompanyQuery, response="deleted")
async def delete_company(request: Request) -> Response:
    company_id = request.path_params["company_id"]
    query = read_query(request, DeleteCompanyQuery)
    reject_unsupported(query)
    actor = request_actor(request)

    def work(session: Session) -> None:
        companies.delete_company(session, company_id, actor=actor)

    await run_db(request, work)
    return ok({"deleted": True}, echo(query))


routes = [
    Route("/companies", upsert_company, methods=["POST"]),
    Route("/companies", list_companies, methods=["GET"]),
    Route("/companies/lookup", lookup_company, methods=["GET"]),
    Route("/companies/{company_id}", get_company, methods=["GET"]),
    Route("/companies/{company_id}", delete_company, methods=["DELETE"]),
    Route("/company-traits", upsert_company_trait, methods=["POST"]),
]
