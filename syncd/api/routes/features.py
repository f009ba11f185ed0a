"""``/features``, ``/flags``: the SDK's ``features`` client (CRUD and flag rules)."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...services import features, flags
from ..auth import request_actor
from ..http import echo, ok, read_body, read_query, run_db
from ..schemas.features import (
    CreateFeatureBody,
    ListFeaturesQuery,
    ListFlagsQuery,
    UpdateFeatureBody,
    UpdateFlagRulesBody,
)
from ..spec import operation
from ..views.features import feature_detail, flag_detail, rules_detail

_FEATURE_FIELDS = features.UPDATABLE


@operation(body=CreateFeatureBody)
async def create_feature(request: Request) -> Response:
    body = await read_body(request, CreateFeatureBody)
    actor = request_actor(request)

    def work(session: Session) -> dict[str, Any]:
        feature = features.create_feature(
            session,
            name=body.name,
            description=body.description,
            feature_type=body.feature_type,
            event_subtype=body.event_subtype,
            trait_id=body.trait_id,
            lifecycle_phase=body.lifecycle_phase,
            flag=body.flag.to_input() if body.flag else None,
            actor=actor,
        )
        return feature_detail(session, feature)

    return ok(await run_db(request, work))


@operation(body=UpdateFeatureBody)
async def update_feature(request: Request) -> Response:
    feature_id = request.path_params["feature_id"]
    body = await read_body(request, UpdateFeatureBody)
    changes = {name: getattr(body, name) for name in _FEATURE_FIELDS if name in body.model_fields_set}
    actor = request_actor(request)

    def work(session: Session) -> dict[str, Any]:
        feature = features.update_feature(
            session,
            feature_id,
            changes=changes,
            flag=body.flag.to_input() if body.flag else None,
            actor=actor,
        )
        return feature_detail(session, feature)

    return ok(await run_db(request, work))


@operation()
async def get_feature(request: Request) -> Response:
    feature_id = request.path_params["feature_id"]

    def work(session: Session) -> dict[str, Any]:
        return feature_detail(session, features.get_feature(session, feature_id))

    return ok(await run_db(request, work))


@operation(response="deleted")
async def delete_feature(request: Request) -> Response:
    feature_id = request.path_params["feature_id"]
    actor = request_actor(request)

    def work(session: Session) -> None:
        features.delete_feature(session, feature_id, actor=actor)

    await run_db(request, work)
    return ok({"deleted": True})


@operation(query=ListFeaturesQuery)
async def list_features(request: Request) -> Response:
    query = read_query(request, ListFeaturesQuery)
    page = query.page()

    def work(session: Session) -> list[dict[str, Any]]:
        rows = features.list_features(
            session,
            ids=query.ids,
            feature_types=query.feature_type,
            q=query.q,
            plan_version_id=query.plan_version_id,
            without_company_override_for=query.without_company_override_for,
            without_plan_entitlement_for=query.without_plan_entitlement_for,
            boolean_require_event=query.boolean_require_event,
            page=page,
        )
        return [feature_detail(session, f) for f in rows]

    return ok(await run_db(request, work), echo(query))


@operation(query=ListFlagsQuery)
async def list_flags(request: Request) -> Response:
    query = read_query(request, ListFlagsQuery)
    page = query.page()

    def work(session: Session) -> list[dict[str, Any]]:
        rows = flags.list_flags(session, feature_id=query.feature_id, ids=query.ids, q=query.q, page=page)
        return [flag_detail(session, f) for f in rows]

    return ok(await run_db(request, work), echo(query))


@operation()
async def get_flag(request: Request) -> Response:
    flag_id = request.path_params["flag_id"]

    def work(session: Session) -> dict[str, Any]:
        return flag_detail(session, flags.get_flag(session, flag_id))

    return ok(await run_db(request, work))


@operation(body=UpdateFlagRulesBody)
async def update_flag_rules(request: Request) -> Response:
    flag_id = request.path_params["flag_id"]
    body = await read_body(request, UpdateFlagRulesBody)
    rules = [r.to_input() for r in body.rules]
    actor = request_actor(request)

    def work(session: Session) -> dict[str, Any]:
        updated = flags.update_flag_rules(session, flag_id, rules, actor=actor)
        return rules_detail(session, flags.get_flag(session, flag_id), updated)

    return ok(await run_db(request, work))


routes = [
    Route("/features", create_feature, methods=["POST"]),
    Route("/features", list_features, methods=["GET"]),
    Route("/features/{feature_id}", get_feature, methods=["GET"]),
    Route("/features/{feature_id}", update_feature, methods=["PUT"]),
    Route("/features/{feature_id}", delete_feature, methods=["DELETE"]),
    Route("/flags", list_flags, methods=["GET"]),
    Route("/flags/{flag_id}", get_flag, methods=["GET"]),
    Route("/flags/{flag_id}/rules", update_flag_rules, methods=["PUT"]),
]
