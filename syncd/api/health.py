"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..metrics import CONTENT_TYPE_LATEST
from .spec import operation

if TYPE_CHECKING:
    from ..daemon import Daemon


def _daemon(request: Request) -> Daemon:
    daemon: Daemon = request.app.state.daemon
    return daemon


@operation(response="raw", tag="operations")
async def healthz(request: Request) -> Response:
    """Liveness: the process is up and serving."""
    return JSONResponse({"status": "ok"})


@operation(response="raw", tag="operations", extra_statuses=(503,))
async def ready(request: Request) -> Response:
    """Readiness: migrated, database reachable and the initial sync done (503 otherwise)."""
    daemon = _daemon(request)
    report = await run_in_threadpool(daemon.readiness)
    report["pid"] = os.getpid()  # which worker answered, with [server] workers > 1
    return JSONResponse(report, status_code=200 if report["ready"] else 503)


@operation(response="raw", tag="operations", content_type="text/plain")
async def metrics(request: Request) -> Response:
    daemon = _daemon(request)
    await run_in_threadpool(daemon.refresh_gauges)
    return Response(daemon.metrics.render(), media_type=CONTENT_TYPE_LATEST)


routes = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/ready", ready, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
]
