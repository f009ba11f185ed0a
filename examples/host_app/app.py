"""The example host app: one free route, one boolean-gated route, one metered route.

``create_app`` wires any replica and tracker (the tests pass an in-process one or a Redis one);
``examples.host_app.main`` builds the served app from environment variables.

- ``GET /``: free; answers with the serving process id (the multi-worker test uses it).
- ``GET /sso``: requires the boolean feature ``sso`` (decorator).
- ``POST /reports``: requires ``reports`` and counts one ``report`` event per success
  (decorator, fail-open: reports keep working if entitlement data is unavailable);
  ``?fail=1`` makes the handler fail (500), which must not count.
- ``GET /beta``: gated by configuration on ``beta-ui``, a non-billing rollout flag (403 when off).
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
    Replica,
    UsageTracker,
    header_identity,
    requires_feature,
)
from syncd_asgi.identity import Identify

UPGRADE_URL = "https://example.com/billing/upgrade?feature={feature}"


async def home(request: Request) -> JSONResponse:
    return JSONResponse({"pid": os.getpid()})


@requires_feature("sso")
async def sso(request: Request) -> JSONResponse:
    return JSONResponse({"sso": "configured"})


@requires_feature("reports", event="report", fail="open")
async def reports(request: Request) -> JSONResponse:
    if request.query_params.get("fail"):
        return JSONResponse({"error": "report generation failed"}, status_code=500)
    return JSONResponse({"report": "generated"})


async def beta(request: Request) -> JSONResponse:
    return JSONResponse({"beta": True})


def create_app(
    replica: Replica,
    *,
    tracker: UsageTracker | None = None,
    identify: Identify | None = None,
    startup_timeout: float = 5.0,
) -> Starlette:
    """The app, gated by ``replica``; callers identify their company with ``X-Company-Key``."""
    routes = [
        Route("/", home),
        Route("/sso", sso),
        Route("/reports", reports, methods=["POST"]),
        Route("/beta", beta),
    ]
    gate = Middleware(
        EntitlementMiddleware,
        replica=replica,
        identify=identify or header_identity("x-company-key", "id", user_header="x-user-key"),
        rules=[GateRule.of("/beta", "beta-ui", methods=["GET"])],
        tracker=tracker,
        upgrade_url=UPGRADE_URL,
        startup_timeout=startup_timeout,
    )
    return Starlette(routes=routes, middleware=[gate])
