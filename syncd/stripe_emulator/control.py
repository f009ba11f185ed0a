"""Emulator-only control endpoints under ``/_emulator`` (no API key needed).

=====================================  ==============================================
``GET  /_emulator/health``             ``{"ok": true, "now": ts}``
``GET  /_emulator/clock``              ``{"now": ts, "iso": "..."}``
``POST /_emulator/clock/advance``      ``{"seconds": n}`` | ``{"days": n}`` | ``{"to": ts}``
                                       → ``{"now", "events": [{"id", "type"}]}``
``POST /_emulator/reset``              ``{"start_time": ts}`` (optional) → ``{"now"}``
``GET|POST|DELETE /_emulator/faults``  :class:`~.faults.FaultConfig` fields as JSON
``POST /_emulator/webhooks/flush``     deliver everything pending now, retries included
``GET  /_emulator/webhooks/deliveries`` the attempt log and the pending count
``GET  /_emulator/webhooks/config``    the configured URL and its ``whsec_`` secret
``POST /_emulator/customers/{id}/payment_method``  ``{"payment_method": "pm_card_…"}``
``GET|POST /_emulator/settings``       dunning/payment settings (see below)
=====================================  ==============================================
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .clock import DAY, iso
from .errors import StripeAPIError
from .faults import FaultConfig
from .store import JSON

if TYPE_CHECKING:
    from .emulator import Emulator

__all__ = ["control_routes"]

SETTINGS = (
    "dunning_retry_days",
    "dunning_final_action",
    "missing_payment_method",
    "incomplete_expiry_seconds",
    "trial_will_end_seconds",
    "require_auth",
    "webhook_max_attempts",
)


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        from urllib.parse import parse_qsl

        return dict(parse_qsl(raw.decode()))
    if not isinstance(data, dict):
        raise StripeAPIError(400, "Expected a JSON object.")
    return data


def _error(exc: StripeAPIError) -> JSONResponse:
    return JSONResponse(exc.to_json(), status_code=exc.status)


def control_routes(emu: Emulator) -> list[Route]:
    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True, "now": emu.now()})

    async def clock(request: Request) -> JSONResponse:
        now = emu.now()
        return JSONResponse({"now": now, "iso": iso(now)})

    async def advance(request: Request) -> JSONResponse:
        try:
            body = await _body(request)
            if "to" in body:
                target = int(body["to"])

                def run() -> list[JSON]:
                    return emu.advance_to(target)
            else:
                seconds = int(float(body.get("seconds", 0)) + float(body.get("days", 0)) * DAY)
                if seconds < 0:
                    raise ValueError("cannot move the clock backwards")

                def run() -> list[JSON]:
                    return emu.advance(seconds)

            events = await run_in_threadpool(run)
        except (TypeError, ValueError) as exc:
            return _error(StripeAPIError(400, f"Invalid clock advance: {exc}"))
        except StripeAPIError as exc:
            return _error(exc)
        return JSONResponse(
            {"now": emu.now(), "events": [{"id": e["id"], "type": e["type"]} for e in events]}
        )

    async def reset(request: Request) -> JSONResponse:
        body = await _body(request)
        start = body.get("start_time")
        await run_in_threadpool(emu.reset, None if start is None else int(start))
        return JSONResponse({"ok": True, "now": emu.now()})

    async def faults(request: Request) -> JSONResponse:
        if request.method == "POST":
            try:
                emu.faults.configure(FaultConfig.from_json(await _body(request)))
            except (TypeError, ValueError) as exc:
                return _error(StripeAPIError(400, str(exc)))
        elif request.method == "DELETE":
            emu.faults.configure(FaultConfig())
        return JSONResponse({**emu.faults.config.to_json(), "injected": dict(emu.faults.injected)})

    async def flush(request: Request) -> JSONResponse:
        result = await run_in_threadpool(emu.flush_webhooks)
        return JSONResponse({**result.to_json(), "pending": emu.dispatcher.pending()})

    async def deliveries(request: Request) -> JSONResponse:
        return JSONResponse({"data": list(emu.dispatcher.log), "pending": emu.dispatcher.pending()})

    async def webhook_config(request: Request) -> JSONResponse:
        return JSONResponse({"url": emu.config.webhook_url, "secret": emu.webhook_secret})

    async def payment_method(request: Request) -> JSONResponse:
        from .resources.customers import set_default_payment_method

        body = await _body(request)
        pm = body.get("payment_method")

        def run() -> dict[str, Any]:
            with emu.lock:
                customer = emu.store.get("customer", request.path_params["id"])
                return set_default_payment_method(emu, customer, None if pm is None else str(pm))

        try:
            return JSONResponse(await run_in_threadpool(run))
        except StripeAPIError as exc:
            return _error(exc)

    async def settings(request: Request) -> JSONResponse:
        if request.method == "POST":
            body = await _body(request)
            unknown = set(body) - set(SETTINGS)
            if unknown:
                return _error(StripeAPIError(400, f"Unknown setting(s): {', '.join(sorted(unknown))}"))
            with emu.lock:
                for key, value in body.items():
                    setattr(emu.config, key, value)
                emu.dispatcher.max_attempts = emu.config.webhook_max_attempts
        return JSONResponse({key: getattr(emu.config, key) for key in SETTINGS})

    return [
        Route("/_emulator/health", health, methods=["GET"]),
        Route("/_emulator/clock", clock, methods=["GET"]),
        Route("/_emulator/clock/advance", advance, methods=["POST"]),
        Route("/_emulator/reset", reset, methods=["POST"]),
        Route("/_emulator/faults", faults, methods=["GET", "POST", "DELETE"]),
        Route("/_emulator/webhooks/flush", flush, methods=["POST"]),
        Route("/_emulator/webhooks/deliveries", deliveries, methods=["GET"]),
        Route("/_emulator/webhooks/config", webhook_config, methods=["GET"]),
        Route("/_emulator/customers/{id}/payment_method", payment_method, methods=["POST"]),
        Route("/_emulator/settings", settings, methods=["GET", "POST"]),
    ]
