"""The example host app: one free route, one boolean-gated route, one metered route.

Feature keys follow syncd's demo catalog (``config/catalog.toml``). ``create_app`` wires any
source and tracker (the tests pass an in-process replica, a Redis one, or a running syncd's
store); ``examples.host_app.main`` builds the served app from environment variables.

- ``GET /``: free; answers with the serving process id (the multi-worker test uses it).
- ``GET /sso``: requires the boolean feature ``sso`` (decorator).
- ``POST /query``: requires ``api-calls`` and counts one ``api-call`` event per success
  (decorator, fail-open: queries keep working if entitlement data is unavailable);
  ``?fail=1`` makes the handler fail (500), which must not count.
- ``GET /dashboard``: gated by configuration on ``new-dashboard``, a rollout flag with no
  plan entitlement (403 when off).
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from syncd_asgi import (
    EntitlementMiddleware,
    GateRule,
    UsageTracker,
    header_identity,
    requires_feature,
)
from syncd_asgi.identity import Identify
from syncd_asgi.replica import Source

UPGRADE_URL = "https://example.com/billing/upgrade?feature={feature}"


async def home(request: Request) -> JSONResponse:
    return JSONResponse({"pid": os.getpid()})


@requires_feature("sso")
async def sso(request: Request) -> JSONResponse:
    return JSONResponse({"sso": "configured"})


@requires_feature("api-calls", event="api-call", fail="open")
async def query(request: Request) -> JSONResponse:
    if request.query_params.get("fail"):
        return JSONResponse({"error": "query failed"}, status_code=500)
    return JSONResponse({"rows": []})


async def dashboard(request: Request) -> JSONResponse:
    return JSONResponse({"dashboard": "new"})


def create_app(
    replica: Source,
    *,
    tracker: UsageTracker | None = None,
    identify: Identify | None = None,
    startup_timeout: float = 5.0,
) -> Starlette:
    """The app, gated by ``replica``; callers identify their company with ``X-Company-Key``."""
    routes = [
        Route("/", home),
        Route("/sso", sso),
        Route("/query", query, methods=["POST"]),
        Route("/dashboard", dashboard),
    ]
    gate = Middleware(
        EntitlementMiddleware,
        replica=replica,
        identify=identify or header_identity("x-company-key", "id", user_header="x-user-key"),
        rules=[GateRule.of("/dashboard", "new-dashboard", methods=["GET"])],
        tracker=tracker,
        upgrade_url=UPGRADE_URL,
        startup_timeout=startup_timeout,
    )
    return Starlette(routes=routes, middleware=[gate])
