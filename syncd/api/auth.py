"""API-key authentication and the one route -> permission table.

Every request is matched against :data:`ROUTE_PERMISSIONS` (method + path template). Public
entries pass through; the others need an ``X-Schematic-Api-Key`` whose kind the entry
allows: missing or unknown key -> 401, known key of the wrong kind -> 403. Requests that
match no entry pass through to the router (404/405); :func:`check_coverage` makes sure at
start-up that every route the app serves has an entry, so nothing is served unprotected
by accident.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.routing import BaseRoute, Route, compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from ..apikeys import Principal
from ..services.audit import Actor
from .middleware import header, send_json_error

if TYPE_CHECKING:
    from ..daemon import Daemon

API_KEY_HEADER = "x-schematic-api-key"
PRINCIPAL_SCOPE_KEY = "syncd.principal"


class Permission(StrEnum):
    PUBLIC = "public"  # no key
    READ = "read"  # GETs: secret, readonly
    WRITE = "write"  # mutations: secret
    CHECK = "check"  # flag checks: secret, readonly, publishable
    INGEST = "ingest"  # identify / track: secret, publishable


ALLOWED_KINDS: dict[Permission, frozenset[str]] = {
    Permission.PUBLIC: frozenset({"secret", "readonly", "publishable"}),
    Permission.READ: frozenset({"secret", "readonly"}),
    Permission.WRITE: frozenset({"secret"}),
    Permission.CHECK: frozenset({"secret", "readonly", "publishable"}),
    Permission.INGEST: frozenset({"secret", "publishable"}),
}


@dataclass(frozen=True, slots=True)
class RoutePermission:
    method: str
    path: str
    permission: Permission


def _table(*rows: tuple[str, str, Permission]) -> tuple[RoutePermission, ...]:
    return tuple(RoutePermission(m, p, perm) for m, p, perm in rows)


P = Permission
# Literal paths come before templated ones with the same prefix (first match wins).
ROUTE_PERMISSIONS: tuple[RoutePermission, ...] = _table(
    # operations and Stripe (verified by signature, not key)
    ("GET", "/healthz", P.PUBLIC),
    ("GET", "/ready", P.PUBLIC),
    ("GET", "/metrics", P.PUBLIC),
    ("GET", "/openapi.json", P.PUBLIC),  # describes the API, holds no data
    ("POST", "/webhooks/stripe", P.PUBLIC),
    # hot path: flag checks and event ingestion
    ("POST", "/flags/check", P.CHECK),
    ("POST", "/flags/check-bulk", P.CHECK),
    ("POST", "/flags/{key}/check", P.CHECK),
    ("POST", "/batch", P.INGEST),
    ("POST", "/events", P.INGEST),
    ("POST", "/event-batch", P.INGEST),
    # companies and users
    ("GET", "/companies", P.READ),
    ("POST", "/companies", P.WRITE),
    ("GET", "/companies/lookup", P.READ),
    ("GET", "/companies/{company_id}", P.READ),
    ("DELETE", "/companies/{company_id}", P.WRITE),
    ("POST", "/company-traits", P.WRITE),
    ("GET", "/users", P.READ),
    ("POST", "/users", P.WRITE),
    ("GET", "/users/lookup", P.READ),
    ("GET", "/users/{user_id}", P.READ),
    # features and flags
    ("GET", "/features", P.READ),
    ("POST", "/features", P.WRITE),
    ("GET", "/features/{feature_id}", P.READ),
    ("PUT", "/features/{feature_id}", P.WRITE),
    ("DELETE", "/features/{feature_id}", P.WRITE),
    ("GET", "/flags", P.READ),
    ("GET", "/flags/{flag_id}", P.READ),
    ("PUT", "/flags/{flag_id}/rules", P.WRITE),
    # plans
    ("GET", "/plans", P.READ),
    ("POST", "/plans", P.WRITE),
    ("GET", "/plans/{plan_id}", P.READ),
    ("PUT", "/plans/{plan_id}", P.WRITE),
    ("DELETE", "/plans/{plan_id}", P.WRITE),
    ("PUT", "/plans/{plan_id}/billing_products", P.WRITE),
    ("PUT", "/company-plans/{company_id}", P.WRITE),
    ("POST", "/companies/{company_id}/plan-change", P.WRITE),
    ("DELETE", "/companies/{company_id}/scheduled-downgrade", P.WRITE),
    # entitlements and overrides
    ("GET", "/plan-entitlements", P.READ),
    ("POST", "/plan-entitlements", P.WRITE),
    ("GET", "/plan-entitlements/{plan_entitlement_id}", P.READ),
    ("PUT", "/plan-entitlements/{plan_entitlement_id}", P.WRITE),
    ("DELETE", "/plan-entitlements/{plan_entitlement_id}", P.WRITE),
    ("POST", "/billing/credits/grants/company", P.WRITE),
    ("GET", "/billing/credits/grants/company/list", P.READ),
    ("GET", "/billing/credits/grants/company/count", P.READ),
    ("PUT", "/billing/credits/grants/{grant_id}/zero-out", P.WRITE),
    ("GET", "/company-overrides", P.READ),
    ("POST", "/company-overrides", P.WRITE),
    ("GET", "/company-overrides/{company_override_id}", P.READ),
    ("PUT", "/company-overrides/{company_override_id}", P.WRITE),
    ("DELETE", "/company-overrides/{company_override_id}", P.WRITE),
    # outbound webhooks
    ("GET", "/webhooks", P.READ),
    ("POST", "/webhooks", P.WRITE),
    ("GET", "/webhooks/{webhook_id}", P.READ),
    ("PUT", "/webhooks/{webhook_id}", P.WRITE),
    ("DELETE", "/webhooks/{webhook_id}", P.WRITE),
    ("POST", "/webhooks/{webhook_id}/test", P.WRITE),
    ("GET", "/webhook-events", P.READ),
)

_COMPILED: tuple[tuple[RoutePermission, re.Pattern[str]], ...] = tuple(
    (entry, compile_path(entry.path)[0]) for entry in ROUTE_PERMISSIONS
)


def permission_for(method: str, path: str) -> Permission | None:
    """The permission a request needs, or None when no entry matches (the router answers)."""
    method = "GET" if method == "HEAD" else method
    for entry, pattern in _COMPILED:
        if entry.method == method and pattern.match(path):
            return entry.permission
    return None


def check_coverage(routes: Iterable[BaseRoute]) -> None:
    """Refuse to build an app that serves a route without an entry in the table."""
    known = {(entry.method, entry.path) for entry in ROUTE_PERMISSIONS}
    for route in routes:
        if not isinstance(route, Route):
            continue
        for method in route.methods or ():
            if method != "HEAD" and (method, route.path) not in known:
                raise RuntimeError(f"route {method} {route.path} has no entry in ROUTE_PERMISSIONS")


def principal(request: Request) -> Principal | None:
    found: Principal | None = request.scope.get(PRINCIPAL_SCOPE_KEY)
    return found


def request_actor(request: Request) -> Actor:
    """The audit actor for a request: the API key that made it."""
    who = principal(request)
    if who is None:
        return Actor("system")
    return Actor("api_key", who.key_id, who.name or who.kind)


class ApiKeyMiddleware:
    """Resolves ``X-Schematic-Api-Key`` and enforces :data:`ROUTE_PERMISSIONS`."""

    def __init__(self, app: ASGIApp, daemon: Daemon) -> None:
        self.app, self.daemon = app, daemon

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        needed = permission_for(scope["method"], scope["path"])
        if needed is None or needed is Permission.PUBLIC:
            await self.app(scope, receive, send)
            return
        presented = header(scope, API_KEY_HEADER.encode())
        who = None
        if presented:
            # Known keys are answered from memory: a thread hop costs more than the whole check.
            who = self.daemon.keys.cached(presented) or await run_in_threadpool(
                self.daemon.keys.verify, presented
            )
        if who is None:
            message = (
                "invalid API key" if presented else f"missing API key (send the {API_KEY_HEADER} header)"
            )
            await send_json_error(send, 401, message, "unauthorized", {})
            return
        if who.kind not in ALLOWED_KINDS[needed]:
            await send_json_error(
                send,
                403,
                f"a {who.kind} API key cannot call {scope['method']} {scope['path']}",
                "forbidden",
                {"key_kind": who.kind, "required": needed.value},
            )
            return
        scope[PRINCIPAL_SCOPE_KEY] = who
        await self.app(scope, receive, send)
