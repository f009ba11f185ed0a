"""``POST /webhooks/stripe``: verify, store, answer fast.

The signature is checked on the raw bytes against every configured secret (rotation),
with a timestamp tolerance against replays. A bad signature gets 400 and stores nothing
(only a metric moves). Anything verified gets 2xx, even types syncd does not use, so
Stripe never disables the endpoint; applying happens later, off the request path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import stripe
import structlog
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..api.errors import error_response
from ..api.spec import operation
from .inbox import MalformedEvent, StoredEvent, parse_event, store_event

if TYPE_CHECKING:
    from ..daemon import Daemon

log = structlog.get_logger(__name__)


def verify_signature(raw: bytes, header: str | None, secrets: list[str], tolerance: int) -> bool:
    if not header or not secrets:
        return False
    payload = raw.decode("utf-8", errors="replace")
    for secret in secrets:
        try:
            stripe.WebhookSignature.verify_header(payload, header, secret, tolerance=tolerance)
        except stripe.SignatureVerificationError:
            continue
        return True
    return False


@operation(
    summary="Inbound Stripe webhook (verified by Stripe-Signature)",
    response="raw",
    raw_body=True,
    headers=("Stripe-Signature",),
    tag="stripe",
)
async def stripe_webhook(request: Request) -> Response:
    daemon: Daemon = request.app.state.daemon
    raw = await request.body()
    header = request.headers.get("stripe-signature")
    tolerance = daemon.settings.stripe.webhook_tolerance_s
    if not verify_signature(raw, header, daemon.webhook_secrets, tolerance):
        daemon.metrics.webhook_signature_failures.inc()
        log.warning("stripe_webhook_bad_signature", has_header=header is not None)
        return error_response(400, "invalid Stripe-Signature", "invalid_signature")
    try:
        event = parse_event(raw)
    except MalformedEvent as exc:
        return error_response(400, str(exc), "invalid_event")

    def store() -> StoredEvent:
        with daemon.engine.begin() as conn:
            return store_event(conn, raw, event)

    stored = await run_in_threadpool(store)
    log.info(
        "stripe_webhook_received",
        event_id=stored.event_id,
        event_type=stored.event_type,
        status=stored.status,
    )
    _kick(daemon, stored)
    return JSONResponse({"received": True, "status": stored.status})


def _kick(daemon: Daemon, stored: StoredEvent) -> None:
    """Apply a new event right away, off the request path (the scheduled job picks up anything
    missed). Only inside a serving daemon with its scheduler on: the same conditions under
    which the inbox job runs at all."""
    from .. import jobs

    fresh = stored.inserted and stored.status == "pending"
    if fresh and daemon.settings.scheduler.enabled and jobs._current is daemon:
        from .runtime import kick

        kick(daemon)


routes = [Route("/webhooks/stripe", stripe_webhook, methods=["POST"])]
