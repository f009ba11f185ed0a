"""The Starlette application: Stripe's ``/v1`` API plus ``/_emulator`` controls.

Each ``/v1`` request goes through: fault injection (429/5xx switches), API-key check,
parameter decoding (bracketed forms, query strings or JSON), then — under the
emulator lock — idempotency-key lookup, the resource handler, any transitions now
due, ``expand[]``, and idempotency storage. Errors are Stripe-shaped JSON.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl

import httpx
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from . import lifecycle
from .config import EmulatorConfig
from .control import control_routes
from .emulator import Emulator, RequestInfo
from .errors import StripeAPIError
from .expand import apply_expand
from .forms import decode_pairs
from .idempotency import StoredResponse, fingerprint
from .resources import (
    catalog,
    customers,
    events,
    invoices,
    meters,
    schedules,
    subscription_items,
    subscriptions,
    test_clocks,
)
from .routing import ApiCall, ApiRoute

__all__ = ["API_ROUTES", "create_app"]

log = logging.getLogger(__name__)

API_ROUTES: list[ApiRoute] = [
    *catalog.ROUTES,
    *customers.ROUTES,
    *subscriptions.ROUTES,
    *subscription_items.ROUTES,
    *schedules.ROUTES,
    *invoices.ROUTES,
    *meters.ROUTES,
    *events.ROUTES,
    *test_clocks.ROUTES,
]


def _json_response(status: int, body: bytes, headers: dict[str, str]) -> Response:
    return Response(body, status_code=status, headers=headers, media_type="application/json")


def _check_auth(emu: Emulator, request: Request) -> None:
    if not emu.config.require_auth:
        return
    header = request.headers.get("authorization", "")
    key = ""
    if header.lower().startswith("bearer "):
        key = header[7:].strip()
    elif header.lower().startswith("basic "):
        try:
            key = base64.b64decode(header[6:]).decode().split(":", 1)[0]
        except (binascii.Error, UnicodeDecodeError):
            key = ""
    if not key:
        raise StripeAPIError(
            401,
            "You did not provide an API key. You need to provide your API key in the "
            "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
        )
    if not key.startswith(("sk_test_", "rk_test_")):
        raise StripeAPIError(
            401,
            "Invalid API Key provided: the emulator only accepts test-mode keys (sk_test_…).",
            code="api_key_expired" if key.startswith("sk_live_") else None,
        )


async def _decode(request: Request) -> dict[str, Any]:
    pairs = list(request.query_params.multi_items())
    raw = await request.body()
    if raw:
        ctype = request.headers.get("content-type", "")
        if "json" in ctype:
            try:
                body = json.loads(raw)
            except json.JSONDecodeError:
                raise StripeAPIError(400, "Invalid JSON body.") from None
            if not isinstance(body, dict):
                raise StripeAPIError(400, "Expected a JSON object body.")
            return {**decode_pairs(pairs), **body}
        pairs += parse_qsl(raw.decode(), keep_blank_values=True)
    return decode_pairs(pairs)


def _expand_paths(data: dict[str, Any]) -> list[str]:
    raw = data.pop("expand", None)
    if raw is None or raw == "":
        return []
    if isinstance(raw, list):
        return [str(p) for p in raw]
    if isinstance(raw, dict):
        return [str(v) for v in raw.values()]
    return [str(raw)]


def _execute(
    emu: Emulator, route: ApiRoute, call: ApiCall, expand: list[str], idem_key: str | None, request_id: str
) -> tuple[int, bytes, dict[str, str]]:
    fp = fingerprint({"data": call.data, "expand": expand})
    with emu.lock:
        if idem_key is not None:
            stored = emu.idempotency.lookup(idem_key, call.method, call.path, fp)
            if stored is not None:
                return stored.status, stored.body, {**stored.headers, "Idempotent-Replayed": "true"}
        emu.request = RequestInfo(request_id, idem_key)
        try:
            result = route.handler(emu, call)
            if call.method != "GET":
                lifecycle.run_until(emu, emu.now())
            result = apply_expand(result, expand, emu.resolve)
            status, body, headers = 200, json.dumps(result).encode(), {}
        except StripeAPIError as exc:
            status, body, headers = exc.status, json.dumps(exc.to_json()).encode(), exc.headers
        finally:
            emu.request = None
        if idem_key is not None and call.method == "POST":
            emu.idempotency.save(idem_key, StoredResponse(call.method, call.path, fp, status, body, headers))
        return status, body, headers


def _endpoint(emu: Emulator, route: ApiRoute) -> Any:
    async def endpoint(request: Request) -> Response:
        request_id = emu.request_id()
        base_headers = {
            "Request-Id": request_id,
            "Stripe-Version": request.headers.get("stripe-version", emu.config.api_version),
        }
        try:
            fault = emu.faults.check_api(request.method, request.url.path)
            if fault is not None:
                raise fault
            _check_auth(emu, request)
            data = await _decode(request)
            expand = _expand_paths(data)
            call = ApiCall(request.method, request.url.path, dict(request.path_params), data)
            idem = request.headers.get("idempotency-key") if request.method == "POST" else None
            status, body, headers = await run_in_threadpool(
                _execute, emu, route, call, expand, idem, request_id
            )
        except StripeAPIError as exc:
            status, body, headers = exc.status, json.dumps(exc.to_json()).encode(), exc.headers
        except Exception:
            log.exception("stripe emulator: unhandled error in %s %s", request.method, request.url.path)
            err = StripeAPIError(500, "An unexpected error occurred in the emulator.", type="api_error")
            status, body, headers = 500, json.dumps(err.to_json()).encode(), {}
        return _json_response(status, body, {**base_headers, **headers})

    return endpoint


def _unknown(emu: Emulator) -> Any:
    async def endpoint(request: Request) -> Response:
        err = StripeAPIError(
            404,
            f"Unrecognized request URL ({request.method}: {request.url.path}). "
            "The emulator does not implement this endpoint.",
        )
        return _json_response(404, json.dumps(err.to_json()).encode(), {})

    return endpoint


def create_app(
    config: EmulatorConfig | None = None,
    *,
    emulator: Emulator | None = None,
    http_client: httpx.Client | None = None,
) -> Starlette:
    """Build the emulator app. ``app.state.emulator`` is the :class:`Emulator`.

    Pass ``config`` (or a ready ``emulator``). ``http_client`` is used for webhook
    deliveries (default: a fresh ``httpx.Client``).
    """
    emu = emulator or Emulator(config, http_client=http_client)
    routes: list[BaseRoute] = [
        Route(r.path, _endpoint(emu, r), methods=[r.method], name=f"{r.method} {r.path}") for r in API_ROUTES
    ]
    routes += control_routes(emu)
    routes.append(Route("/v1/{rest:path}", _unknown(emu), methods=["GET", "POST", "DELETE"]))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        emu.start()
        try:
            yield
        finally:
            emu.dispatcher.stop()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.emulator = emu
    return app
