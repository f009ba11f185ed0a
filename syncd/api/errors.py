"""JSON error responses: every 4xx/5xx body is ``{"error": <message>, "code": <code>, "details": {...}}``."""

from __future__ import annotations

from typing import Any

import structlog
from sqlalchemy.exc import DataError, IntegrityError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..exceptions import ValidationError

log = structlog.get_logger(__name__)


def error_response(status: int, message: str, code: str, **details: Any) -> JSONResponse:
    body: dict[str, Any] = {"error": message, "code": code, "details": details}
    return JSONResponse(body, status_code=status)


async def handle_validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ValidationError)
    return error_response(exc.status, exc.message, exc.code, **exc.details)


async def handle_http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {
        401: "unauthorized",
        403: "forbidden",
        404: "not_found",
        405: "method_not_allowed",
        413: "payload_too_large",
    }.get(exc.status_code, "http_error")
    response = error_response(exc.status_code, str(exc.detail), code)
    response.headers.update(exc.headers or {})
    if exc.status_code == 405:
        # RFC 9110: Allow lists every method of the resource. Starlette names only those of the
        # first route matching the path, and syncd declares one route per method.
        response.headers["Allow"] = ", ".join(sorted(_methods_for(request)))
    return response


def _methods_for(request: Request) -> set[str]:
    """Methods of the resource the path resolves to: the first matching path template."""
    path = request.scope["path"]
    routes = [r for r in request.app.router.routes if isinstance(r, Route)]
    template = next((r.path for r in routes if r.path_regex.match(path)), None)
    return {method for r in routes if r.path == template for method in r.methods or ()}


async def handle_out_of_range(request: Request, exc: Exception) -> Response:
    """A number too large for the database column (SQLite raises OverflowError, Postgres DataError).
    The transaction was rolled back, so nothing was written."""
    log.info("value_out_of_range", path=request.url.path, error=str(getattr(exc, "orig", exc)))
    return error_response(400, "a numeric value is out of range", "value_out_of_range")


async def handle_integrity(request: Request, exc: Exception) -> Response:
    """A unique or foreign-key constraint refused the write, e.g. two requests created the same
    key at once. Nothing was written; a retry sees the winner's row (the SDK retries 409s)."""
    log.warning("integrity_conflict", path=request.url.path, error=str(getattr(exc, "orig", exc)))
    return error_response(409, "the change conflicts with a concurrent change; retry", "conflict")


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled_error", path=request.url.path)
    return error_response(500, "internal server error", "internal_error")


EXCEPTION_HANDLERS = {
    ValidationError: handle_validation,
    HTTPException: handle_http,
    IntegrityError: handle_integrity,
    DataError: handle_out_of_range,
    OverflowError: handle_out_of_range,
    Exception: handle_unexpected,
}
