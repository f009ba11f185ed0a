"""``/billing/credits/grants/...``: the SDK's ``credits`` client, company grants."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...models import utcnow
from ...services import credit_grants
from ..auth import request_actor
from ..http import echo, ok, read_body, read_query, run_db
from ..schemas.base import reject_unsupported
from ..schemas.credits import GrantCreditsBody, ListCompanyGrantsQuery, ZeroOutGrantBody
from ..spec import operation
from ..views.credits import grant_view


@operation(body=GrantCreditsBody, status=201)
async def grant_billing_credits_to_company(request: Request) -> Response:
    body = await read_body(request, GrantCreditsBody)
    reject_unsupported(body)
    actor = request_actor(request)

    def work(session: Session) -> dict[str, Any]:
        row = credit_grants.grant_to_company(
            session,
            company_id=body.company_id,
            credit_id=body.credit_id,
            quantity=body.quantity,
            reason=body.reason,
            expires_at=body.expires_at,
            now=utcnow(),
            actor=actor,
        )
        return grant_view(session, row)

    return ok(await run_db(request, work), body.model_dump(mode="json", exclude_none=True), status=201)


@operation(query=ListCompanyGrantsQuery)
async def list_company_grants(request: Request) -> Response:
    query = read_query(request, ListCompanyGrantsQuery)
    page = query.page()

    def work(session: Session) -> list[dict[str, Any]]:
        rows = credit_grants.list_company_grants(session, query.company_id, page)
        return [grant_view(session, r) for r in rows]

    return ok(await run_db(request, work), echo(query))


@operation(query=ListCompanyGrantsQuery, response="object")
async def count_company_grants(request: Request) -> Response:
    query = read_query(request, ListCompanyGrantsQuery)

    def work(session: Session) -> dict[str, int]:
        return {"count": credit_grants.count_company_grants(session, query.company_id)}

    return ok(await run_db(request, work), echo(query))


@operation(body=ZeroOutGrantBody)
async def zero_out_grant(request: Request) -> Response:
    grant_id = request.path_params["grant_id"]
    body = await read_body(request, ZeroOutGrantBody)
    actor = request_actor(request)

    def work(session: Session) -> dict[str, Any]:
        row = credit_grants.zero_out_grant(
            session, grant_id, now=utcnow(), reason=body.reason or "manual", actor=actor
        )
        return grant_view(session, row)

    return ok(await run_db(request, work))


routes = [
    Route("/billing/credits/grants/company", grant_billing_credits_to_company, methods=["POST"]),
    Route("/billing/credits/grants/company/list", list_company_grants, methods=["GET"]),
    Route("/billing/credits/grants/company/count", count_company_grants, methods=["GET"]),
    Route("/billing/credits/grants/{grant_id}/zero-out", zero_out_grant, methods=["PUT"]),
]
