"""``/users``: the SDK's ``companies`` client (user half)."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...services import users
from ..auth import request_actor
from ..http import echo, lookup_keys, ok, read_body, read_query, run_db
from ..schemas.companies import ListUsersQuery, UpsertUserBody
from ..spec import operation
from ..views.companies import user_detail


@operation(body=UpsertUserBody)
async def upsert_user(request: Request) -> Response:
    body = await read_body(request, UpsertUserBody)
    actor = request_actor(request)

    def work(session: Session) -> dict[str, Any]:
        user, _ = users.upsert_user(
            session,
            keys=body.keys,
            name=body.name,
            traits=body.traits,
            user_id=body.id,
            last_seen_at=body.last_seen_at,
            remove_keys=body.remove_keys or (),
            update_only=bool(body.update_only),
            company=body.company,
            companies=body.companies,
            company_id=body.company_id,
            company_ids=body.company_ids,
            actor=actor,
        )
        return user_detail(session, user)

    return ok(await run_db(request, work))


@operation()
async def get_user(request: Request) -> Response:
    user_id = request.path_params["user_id"]

    def work(session: Session) -> dict[str, Any]:
        return user_detail(session, users.get_user(session, user_id))

    return ok(await run_db(request, work))


@operation(lookup_keys="keys")
async def lookup_user(request: Request) -> Response:
    keys = lookup_keys(request)

    def work(session: Session) -> dict[str, Any]:
        return user_detail(session, users.lookup_user(session, keys))

    return ok(await run_db(request, work), {"keys": keys})


@operation(query=ListUsersQuery)
async def list_users(request: Request) -> Response:
    query = read_query(request, ListUsersQuery)
    page = query.page()

    def work(session: Session) -> list[dict[str, Any]]:
        rows = users.list_users(
            session, company_id=query.company_id, ids=query.ids, plan_id=query.plan_id, q=query.q, page=page
        )
        return [user_detail(session, u) for u in rows]

    return ok(await run_db(request, work), echo(query))


routes = [
    Route("/users", upsert_user, methods=["POST"]),
    Route("/users", list_users, methods=["GET"]),
    Route("/users/lookup", lookup_user, methods=["GET"]),
    Route("/users/{user_id}", get_user, methods=["GET"]),
]
