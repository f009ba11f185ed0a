"""``POST /webhooks/stripe``: verify, store, answer fast.

The signature is checked on the raw bytes against every configured secret (rotation),
with a timestamp tolerance against replays. A bad signature gets 400 and stores nothing
(only a metric moves). Anything verified gets 2xx, even types syncd does not use, so
Stripe never disables the endpoint; applying happens later, off the request path.

Stores are group-committed (:mod:`.intake`): a 2xx is sent only once the event's
transaction has committed. :class:`StripeWebhookApp` answers the route in front of
Starlette's stack (the same statuses, bodies, headers, metrics and logs) because the
stack's per-request cost would otherwise dominate the intake.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import structlog
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ..api.lean import read_body, replay, request_id, scan_headers, send_json
from ..api.spec import operation
from ..models import utcnow
from .inbox import MalformedEvent, StoredEvent, inbox_row, parse_event
from .intake import InboxCommitter

if TYPE_CHECKING:
    from ..daemon import Daemon

log = structlog.get_logger(__name__)

PATH = "/webhooks/stripe"
_SCHEME = "v1"


def verify_signature(raw: bytes, header: str | None, secrets: list[str], tolerance: int) -> bool:
    """Stripe's scheme (as ``stripe.WebhookSignature.verify_header``): ``t=<ts>,v1=<hex>[,v1=...]``,
    HMAC-SHA256 of ``b"<ts>." + raw`` under any secret matching any v1 signature, and (when
    ``tolerance`` is set) a timestamp no older than ``tolerance`` seconds."""
    if not header:
        return False
    try:
        items = [item.split("=", 2) for item in header.split(",")]
        timestamp = int(next(item[1] for item in items if item[0] == "t"))
        signatures = [item[1].encode() for item in items if item[0] == _SCHEME]
    except Exception:  # malformed header, as the SDK: not verified
        return False
    if not signatures:
        return False
    signed = b"%d." % timestamp + raw
    matched = False
    for secret in secrets:
        if not secret.strip(" \t\r\n\f\v"):
            continue
        expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest().encode()
        if any(hmac.compare_digest(expected, signature) for signature in signatures):
            matched = True
            break
    return matched and not (tolerance and timestamp < time.time() - tolerance)


def _json(status: int, body: dict[str, Any]) -> tuple[int, bytes]:
    # The bytes Starlette's JSONResponse (and so error_response) would send.
    return status, json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


_BAD_SIGNATURE = _json(400, {"error": "invalid Stripe-Signature", "code": "invalid_signature", "details": {}})
_RECEIVED = {
    status: _json(200, {"received": True, "status": status}) for status in ("pending", "ignored", "duplicate")
}


async def receive_event(
    daemon: Daemon, committer: InboxCommitter, raw: bytes, header: str | None
) -> tuple[int, bytes]:
    """Verify, parse and (group-)commit one delivery: its status and JSON body. Raises what the
    store raised (nothing was acknowledged then)."""
    received_at = utcnow()
    tolerance = daemon.settings.stripe.webhook_tolerance_s
    if not verify_signature(raw, header, daemon.webhook_secrets, tolerance):
        daemon.metrics.webhook_signature_failures.inc()
        log.warning("stripe_webhook_bad_signature", has_header=header is not None)
        return _BAD_SIGNATURE
    try:
        event = parse_event(raw)
    except MalformedEvent as exc:
        return _json(400, {"error": str(exc), "code": "invalid_event", "details": {}})
    stored = await committer.submit(inbox_row(raw, event, received_at=received_at))
    log.info(
        "stripe_webhook_received",
        event_id=stored.event_id,
        event_type=stored.event_type,
        status=stored.status,
    )
    return _RECEIVED.get(stored.status) or _json(200, {"received": True, "status": stored.status})


def inbox_committer(daemon: Daemon) -> InboxCommitter:
    from .runtime import applies_elsewhere

    return InboxCommitter(
        daemon.engine, lambda stored: _kick(daemon, stored), notify=lambda: applies_elsewhere(daemon)
    )


def _kick(daemon: Daemon, stored: Sequence[StoredEvent]) -> None:
    """Apply new events right away, off the request path (the scheduled job picks up anything
    missed), when this process applies them: inside a serving daemon with its scheduler on
    (the conditions under which the inbox job runs at all) and the applier in a thread. An
    applier in another process is woken by the commit's NOTIFY instead. Once per group."""
    from .. import jobs
    from .runtime import applies_elsewhere, kick

    if not any(s.inserted and s.status == "pending" for s in stored):
        return
    if daemon.settings.scheduler.enabled and jobs._current is daemon and not applies_elsewhere(daemon):
        kick(daemon)


@operation(
    summary="Inbound Stripe webhook (verified by Stripe-Signature)",
    response="raw",
    raw_body=True,
    headers=("Stripe-Signature",),
    tag="stripe",
)
async def stripe_webhook(request: Request) -> Response:
    # Reached only when StripeWebhookApp hands a request over (or in an app without it).
    daemon: Daemon = request.app.state.daemon
    raw = await request.body()
    status, body = await receive_event(
        daemon, request.app.state.inbox_committer, raw, request.headers.get("stripe-signature")
    )
    return Response(body, status_code=status, media_type="application/json")


routes = [Route(PATH, stripe_webhook, methods=["POST"])]


_SIGNATURE_HEADER = b"stripe-signature"


class StripeWebhookApp:
    """Answers ``POST /webhooks/stripe`` before Starlette's middleware and router (~150 µs of
    CPU a request); hands anything unusual (a body over the size cap, a store that failed) to
    the full app, which answers it as ever."""

    def __init__(self, app: ASGIApp, daemon: Daemon, committer: InboxCommitter) -> None:
        self.app, self.daemon, self.committer = app, daemon, committer
        self.max_bytes = daemon.settings.server.max_body_bytes
        self._latency = daemon.metrics.request_latency

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        signature, length, given_id = scan_headers(scope, _SIGNATURE_HEADER, self.max_bytes)
        if length > self.max_bytes:
            await self.app(scope, receive, send)
            return
        raw = await read_body(scope, receive, send, self.app, self.max_bytes, replay_other=False)
        if raw is None:
            return  # the full app answered, or the client went away before sending its body
        header = signature.decode("latin-1") if signature is not None else None
        rid = request_id(given_id)
        with structlog.contextvars.bound_contextvars(request_id=rid.decode("latin-1")):
            try:
                status, body = await receive_event(self.daemon, self.committer, raw, header)
            except Exception:
                # Not stored: the full app answers (its error handlers, its 5xx shape).
                await self.app(scope, replay([raw], None, receive, False), send)
                return
        await send_json(send, status, body, rid)
        self._latency.labels(PATH, "POST", str(status)).observe(time.perf_counter() - start)
