"""``GET /openapi.json``: the OpenAPI 3.1 document, generated from the app's routes.

Starlette's schema generator walks the route table; each endpoint's ``@operation``
declaration (``syncd.api.spec``) names the pydantic models it validates with, whose JSON
schemas become ``components/schemas``. Security comes from the same permission table the
middleware enforces (``auth.ROUTE_PERMISSIONS``), so the document cannot drift from what is
served: a route without a declaration is still listed (and fails the coverage test).
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.schemas import BaseSchemaGenerator

from .auth import ALLOWED_KINDS, ROUTE_PERMISSIONS, Permission
from .spec import Operation, operation, spec_of

OPENAPI_VERSION = "3.1.0"
SECURITY_SCHEME = "ApiKeyAuth"
_PERMISSIONS = {(e.method, e.path): e.permission for e in ROUTE_PERMISSIONS}
_PATH_PARAM = re.compile(r"{([^}:]+)(?::[^}]*)?}")
_REF = "#/components/schemas/{model}"

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error", "code", "details"],
    "properties": {
        "error": {"type": "string", "description": "human-readable message"},
        "code": {"type": "string", "description": "machine-readable error code"},
        "details": {"type": "object", "description": "error-specific fields, e.g. errors[] for 400"},
    },
}
_ERROR_TEXT = {
    400: "invalid input (malformed JSON, wrong types, unsupported parameters); nothing was written",
    401: "missing or unknown API key",
    403: "the API key's kind may not call this operation",
    404: "an addressed or referenced object does not exist",
    409: "the change conflicts with existing or concurrent data",
    413: "request body too large",
    503: "not ready",
}


class OpenApiGenerator(BaseSchemaGenerator):
    def __init__(self, *, title: str, version: str) -> None:
        self.title, self.version = title, version

    def get_schema(self, routes: list[BaseRoute]) -> dict[str, Any]:
        components: dict[str, Any] = {"Error": ERROR_SCHEMA}
        paths: dict[str, dict[str, Any]] = {}
        for endpoint in self.get_endpoints(routes):
            method = endpoint.http_method.upper()
            spec = spec_of(endpoint.func) or Operation()
            op = _operation(endpoint.path, method, endpoint.func.__name__, spec, components)
            paths.setdefault(endpoint.path, {})[endpoint.http_method] = op
        return {
            "openapi": OPENAPI_VERSION,
            "info": {
                "title": self.title,
                "version": self.version,
                "description": "syncd: self-hosted entitlements, compatible with the Schematic API.",
            },
            "paths": paths,
            "components": {
                "schemas": dict(sorted(components.items())),
                "securitySchemes": {
                    SECURITY_SCHEME: {"type": "apiKey", "in": "header", "name": "X-Schematic-Api-Key"}
                },
            },
        }


def _operation(
    path: str, method: str, name: str, spec: Operation, components: dict[str, Any]
) -> dict[str, Any]:
    permission = _PERMISSIONS.get((method, path))
    secured = permission is not None and permission is not Permission.PUBLIC
    path_params = _PATH_PARAM.findall(path)
    parameters: list[dict[str, Any]] = [
        {"name": p, "in": "path", "required": True, "schema": {"type": "string"}} for p in path_params
    ]
    if spec.query is not None:
        parameters += _query_parameters(spec.query, components)
    if spec.lookup_keys:
        parameters.append(
            {
                "name": spec.lookup_keys,
                "in": "query",
                "required": True,
                "style": "deepObject",
                "explode": True,
                "schema": {"type": "object", "additionalProperties": {"type": "string"}, "minProperties": 1},
            }
        )
    parameters += [
        {"name": h, "in": "header", "required": True, "schema": {"type": "string"}} for h in spec.headers
    ]
    op: dict[str, Any] = {
        "operationId": name,
        "summary": spec.summary or name.replace("_", " ").capitalize(),
        "tags": [spec.tag or path.strip("/").split("/")[0] or "root"],
        "parameters": parameters,
        "responses": _responses(method, spec, secured, bool(path_params), components),
        "security": [{SECURITY_SCHEME: []}] if secured else [],
    }
    unsupported = getattr(spec.query, "UNSUPPORTED", ())
    if unsupported:  # accepted by Schematic, refused by syncd when set
        op["x-syncd-unsupported"] = list(unsupported)
    if permission is not None:
        op["x-syncd-key-kinds"] = sorted(ALLOWED_KINDS[permission]) if secured else []
    if spec.body is not None or spec.raw_body:
        schema = _ref(spec.body, components) if spec.body else {"type": "object"}
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema}}}
    return op


def _responses(
    method: str, spec: Operation, secured: bool, has_path_params: bool, components: dict[str, Any]
) -> dict[str, Any]:
    data = _ref(spec.data, components) if spec.data is not None else {"type": "object"}
    if spec.response == "raw":
        body = data
    else:
        if spec.response == "list":
            data = {"type": "array", "items": data}
        elif spec.response == "deleted":
            data = {"type": "object", "required": ["deleted"], "properties": {"deleted": {"type": "boolean"}}}
        body = {
            "type": "object",
            "required": ["data", "params"],
            "properties": {"data": data, "params": {"type": "object"}},
        }
    content: dict[str, Any] = (
        {spec.content_type: {"schema": body}}
        if spec.content_type == "application/json"
        else {spec.content_type: {"schema": {"type": "string"}}}
    )
    responses: dict[str, Any] = {str(spec.status): {"description": "success", "content": content}}
    statuses = set(spec.extra_statuses)
    if secured:
        statuses |= {401, 403}
    if spec.body is not None or spec.raw_body:
        statuses |= {400, 413}
    if spec.query is not None or spec.lookup_keys:
        statuses.add(400)
    if has_path_params or spec.lookup_keys:
        statuses.add(404)
    if method in {"POST", "PUT", "DELETE"} and not spec.raw_body:
        statuses |= {404, 409}
    error = {"application/json": {"schema": {"$ref": _REF.format(model="Error")}}}
    for status in sorted(statuses):
        responses[str(status)] = {"description": _ERROR_TEXT.get(status, "error"), "content": error}
    return responses


def _ref(model: type[BaseModel] | Any, components: dict[str, Any]) -> dict[str, Any]:
    """Register ``model`` (and its nested models) in ``components``; a ``$ref`` to it."""
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return dict(model)
    schema = _documented(model)
    for name, definition in schema.pop("$defs", {}).items():
        _register(components, name, definition)
    _register(components, model.__name__, schema)
    return {"$ref": _REF.format(model=model.__name__)}


def _register(components: dict[str, Any], name: str, schema: dict[str, Any]) -> None:
    existing = components.setdefault(name, schema)
    if existing != schema:
        raise RuntimeError(f"two different request models are named {name}; rename one")


def _documented(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema without the fields syncd refuses when set (``UNSUPPORTED``)."""
    schema = model.model_json_schema(ref_template=_REF)
    unsupported: tuple[str, ...] = getattr(model, "UNSUPPORTED", ())
    if unsupported:
        for name in unsupported:
            schema.get("properties", {}).pop(name, None)
        schema["x-syncd-unsupported"] = list(unsupported)
    return schema


def _query_parameters(model: type[BaseModel], components: dict[str, Any]) -> list[dict[str, Any]]:
    schema = _documented(model)
    for name, definition in schema.pop("$defs", {}).items():
        _register(components, name, definition)
    required = set(schema.get("required", ()))
    params = []
    for name, prop in schema.get("properties", {}).items():
        param: dict[str, Any] = {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": _not_null(prop),
        }
        if param["schema"].get("type") == "array":
            param |= {"style": "form", "explode": True}
        params.append(param)
    return params


def _not_null(prop: dict[str, Any]) -> dict[str, Any]:
    """A query value is absent, never JSON null: drop ``null`` from optional fields."""
    prop = {k: v for k, v in prop.items() if not (k == "default" and v is None)}
    variants = prop.pop("anyOf", None)
    if variants is None:
        return prop
    kept = [v for v in variants if v.get("type") != "null"]
    return {**prop, **kept[0]} if len(kept) == 1 else {**prop, "anyOf": kept}


def document(routes: list[BaseRoute], version: str) -> dict[str, Any]:
    return OpenApiGenerator(title="syncd", version=version).get_schema(routes)


@operation(summary="This OpenAPI document", response="raw", tag="meta")
async def openapi_json(request: Request) -> Response:
    cached: dict[str, Any] | None = getattr(request.app.state, "openapi", None)
    if cached is None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            app_version = version("syncd")
        except PackageNotFoundError:  # running from a source tree
            app_version = "0"
        cached = request.app.state.openapi = document(request.app.routes, app_version)
    return JSONResponse(cached)


routes = [Route("/openapi.json", openapi_json, methods=["GET"])]
