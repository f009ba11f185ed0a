"""The route -> permission table, enforced for every route and every kind of key."""

from __future__ import annotations

import re

import pytest
from starlette.routing import Route

from syncd.api import create_app
from syncd.api.auth import ALLOWED_KINDS, ROUTE_PERMISSIONS, Permission, RoutePermission, check_coverage

from .conftest import KINDS, ApiServer

PROTECTED = [e for e in ROUTE_PERMISSIONS if e.permission is not Permission.PUBLIC]
# Hot-path routes whose handlers are built with the rules engine; their entries already apply.
PENDING = {"/flags/check", "/flags/check-bulk", "/flags/{key}/check", "/batch", "/events", "/event-batch"}


def _concrete(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: f"{m.group(1)}_missing", path)


def _served(api: ApiServer) -> set[tuple[str, str]]:
    app = create_app(api.daemon)
    return {
        (method, route.path)
        for route in app.routes
        if isinstance(route, Route)
        for method in route.methods or ()
        if method != "HEAD"
    }


def test_every_served_route_has_an_entry_and_every_entry_is_served_or_pending(api: ApiServer) -> None:
    served = _served(api)
    table = {(e.method, e.path) for e in ROUTE_PERMISSIONS}
    assert served <= table
    missing = {(m, p) for m, p in table - served if p not in PENDING and p != "/webhooks/stripe"}
    assert missing == set()


def test_a_route_without_an_entry_is_refused_at_startup() -> None:
    async def endpoint() -> None:  # pragma: no cover - never called
        return None

    with pytest.raises(RuntimeError, match="no entry"):
        check_coverage([Route("/secret-admin", endpoint, methods=["POST"])])


@pytest.mark.parametrize("entry", PROTECTED, ids=lambda e: f"{e.method} {e.path}")
def test_permission_matrix(api: ApiServer, entry: RoutePermission) -> None:
    path = _concrete(entry.path)
    before = api.table_counts()
    keys = {**api.keys, "wrong": "sch_dev_not-a-real-key"}
    with api.http(None) as http:
        responses = {
            kind: http.request(
                entry.method, path, content=b"{}", headers={"X-Schematic-Api-Key": keys[kind]} if kind else {}
            )
            for kind in (*KINDS, None, "wrong")
        }
    for kind, response in responses.items():
        body = response.json()
        if kind in (None, "wrong"):
            assert response.status_code == 401, (kind, response.text)
            assert body["code"] == "unauthorized" and set(body) == {"error", "code", "details"}
        elif kind in ALLOWED_KINDS[entry.permission]:
            assert response.status_code not in (401, 403), (kind, response.text)
        else:
            assert response.status_code == 403, (kind, response.text)
            assert body["code"] == "forbidden" and body["details"]["key_kind"] == kind
    assert api.table_counts() == before


@pytest.mark.parametrize("path", ["/healthz", "/ready", "/metrics"])
def test_public_routes_need_no_key(api: ApiServer, path: str) -> None:
    with api.http(None) as http:
        assert http.get(path).status_code == 200


def test_unknown_routes_are_404_without_a_key(api: ApiServer) -> None:
    with api.http(None) as http:
        response = http.get("/no-such-route")
    assert response.status_code == 404 and response.json()["code"] == "not_found"


def test_sdk_surfaces_401_and_403(api: ApiServer) -> None:
    from schematic.client import Schematic, SchematicConfig
    from schematic.errors import ForbiddenError, UnauthorizedError

    readonly = api.sdk("readonly")
    assert readonly.companies.list_companies(limit=1).params.limit == 1
    with pytest.raises(ForbiddenError):
        readonly.companies.upsert_company(keys={"k": "v"})
    with pytest.raises(ForbiddenError):
        api.sdk("publishable").companies.list_companies()
    stranger = Schematic("sch_dev_nope", SchematicConfig(base_url=api.base_url))
    try:
        with pytest.raises(UnauthorizedError):
            stranger.features.list_features()
    finally:
        stranger.shutdown()
