"""``GET /openapi.json`` describes exactly the routes the app serves, with their declared models."""

from __future__ import annotations

import inspect
import re
from typing import Any

import httpx
import pytest
from starlette.routing import Route

from syncd.api.app import all_routes, create_app
from syncd.api.auth import ROUTE_PERMISSIONS, Permission
from syncd.api.openapi import document
from syncd.api.spec import spec_of

from .conftest import ApiServer

SQLITE = pytest.mark.parametrize("api", ["sqlite"], indirect=True)

METHODS = {"get", "post", "put", "patch", "delete"}


def served(routes: list[Any]) -> set[tuple[str, str]]:
    return {
        (method, route.path)
        for route in routes
        if isinstance(route, Route)
        for method in route.methods or ()
        if method != "HEAD"
    }


def documented(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(m.upper(), path) for path, ops in doc["paths"].items() for m in ops if m in METHODS}


@SQLITE
def test_document_lists_every_served_route_and_nothing_else(api: ApiServer) -> None:
    response = httpx.get(f"{api.base_url}/openapi.json")  # public: no key
    assert response.status_code == 200
    doc = response.json()
    assert doc["openapi"].startswith("3.1")
    app_routes = served(list(create_app(api.daemon).routes))
    assert documented(doc) == app_routes
    assert app_routes <= {(e.method, e.path) for e in ROUTE_PERMISSIONS}
    assert doc == document(all_routes(), doc["info"]["version"])


def test_every_handler_declares_the_models_it_validates_with() -> None:
    """The ``@operation`` body/query must be the model the handler passes to read_body/read_query."""
    for route in all_routes():
        assert isinstance(route, Route)
        spec = spec_of(route.endpoint)
        assert spec is not None, f"{route.path}: {route.endpoint.__name__} has no @operation"
        source = inspect.getsource(route.endpoint)
        body = re.search(r"read_body\(request, (\w+)\)", source)
        query = re.search(r"read_query\(request, (\w+)\)", source)
        assert (spec.body.__name__ if spec.body else None) == (body and body.group(1)), route.path
        assert (spec.query.__name__ if spec.query else None) == (query and query.group(1)), route.path
        assert bool(spec.lookup_keys) == ("lookup_keys(request)" in source), route.path


@SQLITE
def test_security_and_error_shape_follow_the_permission_table(api: ApiServer) -> None:
    doc = httpx.get(f"{api.base_url}/openapi.json").json()
    scheme = doc["components"]["securitySchemes"]["ApiKeyAuth"]
    assert scheme == {"type": "apiKey", "in": "header", "name": "X-Schematic-Api-Key"}
    for entry in ROUTE_PERMISSIONS:
        op = doc["paths"].get(entry.path, {}).get(entry.method.lower())
        if op is None:  # in the table ahead of its route
            continue
        if entry.permission is Permission.PUBLIC:
            assert op["security"] == [], entry
        else:
            assert op["security"] == [{"ApiKeyAuth": []}], entry
            assert op["responses"]["401"]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/Error"
            }
    assert doc["paths"]["/flags/{flag_id}"]["get"]["x-syncd-key-kinds"] == ["readonly", "secret"]
    assert doc["components"]["schemas"]["Error"]["required"] == ["error", "code", "details"]


@SQLITE
def test_parameters_and_bodies_come_from_the_pydantic_models(api: ApiServer) -> None:
    doc = httpx.get(f"{api.base_url}/openapi.json").json()
    features = doc["paths"]["/features"]
    params = {p["name"]: p for p in features["get"]["parameters"]}
    assert params["limit"]["schema"] == {
        "default": 100,
        "maximum": 250,
        "minimum": 1,
        "title": "Limit",
        "type": "integer",
    }
    assert params["ids"]["schema"]["type"] == "array" and params["ids"]["explode"] is True
    body = features["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/CreateFeatureBody"}
    create = doc["components"]["schemas"]["CreateFeatureBody"]
    assert set(create["required"]) == {"name", "description", "feature_type"}
    assert create["properties"]["flag"]["anyOf"][0] == {"$ref": "#/components/schemas/FlagBody"}
    # A list answers {data: [...], params}; unsupported Schematic parameters are left out, and named.
    ok = features["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok["properties"]["data"]["type"] == "array"
    companies = doc["paths"]["/companies"]["get"]
    assert "sort_order_column" not in {p["name"] for p in companies["parameters"]}
    assert "sort_order_column" in companies["x-syncd-unsupported"]
    lookup = {p["name"]: p for p in doc["paths"]["/companies/lookup"]["get"]["parameters"]}
    assert lookup["keys"]["style"] == "deepObject"
