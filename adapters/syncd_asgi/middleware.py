"""Pure ASGI middleware enforcing entitlements on gated routes, decided locally from a replica.

Per request: the (method, path) -> gate lookup is one dict hit once seen; an ungated route goes
straight to the app. A gated one resolves the caller (``identify``), asks the replica (warm
path: the company's precompiled snapshot) and either refuses with a JSON body or calls the app,
wrapping ``send`` only when it must (metered route: watch the status; stale state: add the
``syncd-entitlements: stale`` header). No network call happens on the request path.

Refusals: 402 for a billing flag (one granted by plans, add-ons or overrides), 403 for any other
flag; the body names the feature, the engine's reason, usage and allocation when metered, and an
upgrade hint. No decision possible (no data yet in this process, unknown flag, conflicting keys):
the route's fail mode decides, 503 when closed, pass-through marked ``unavailable`` when open.
An ``IdentityError`` from ``identify`` is a 401.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Awaitable, Iterable, Sequence
from typing import Any

import anyio.to_thread
import structlog
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from syncd.engine.wire import CheckFlagResult

from .gates import Gate, GateRule, GateTable, find_routes
from .identity import Identify, Identity, IdentityError
from .metering import UsageTracker
from .replica import Source

log = structlog.get_logger(__name__)

STATE_HEADER = b"syncd-entitlements"
_STALE = (STATE_HEADER, b"stale")
_UNAVAILABLE = (STATE_HEADER, b"unavailable")
_JSON = (b"content-type", b"application/json")


def _no_identity(scope: Scope) -> Identity | None:
    return None


class EntitlementMiddleware:
    """Gate routes by feature flags evaluated from ``replica``.

    ``rules``: config gates (tried before decorated endpoints). ``routes``: the route table
    to read ``@requires_feature`` from (found under ``app`` when omitted). ``upgrade_url``:
    put in refusals; ``{feature}`` is replaced by the flag key. ``tracker``: where metered
    routes report usage (required if any gate has an ``event``). ``startup_timeout``: how long
    ASGI lifespan start-up waits for the replica's first load.
    """

    def __init__(
        self,
        app: ASGIApp,
        replica: Source,
        identify: Identify = _no_identity,
        *,
        rules: Iterable[GateRule] = (),
        routes: Sequence[BaseRoute] | None = None,
        tracker: UsageTracker | None = None,
        upgrade_url: str | None = None,
        startup_timeout: float = 5.0,
    ) -> None:
        self.app, self.replica, self.identify = app, replica, identify
        self.tracker, self.upgrade_url, self.startup_timeout = tracker, upgrade_url, startup_timeout
        self._rules = list(rules)
        self._explicit_routes = routes
        self._table: GateTable | None = None

    def _gates(self) -> GateTable:
        # Built on first use: Starlette assembles its middleware stack (and so our ``app``)
        # lazily, and routes may be added after the middleware is declared.
        table = GateTable(self._rules, self._explicit_routes or find_routes(self.app))
        for gate in [r.gate for r in self._rules]:
            self._check_metered(gate)
        self._table = table
        return table

    def _check_metered(self, gate: Gate | None) -> None:
        if gate is not None and gate.event is not None and self.tracker is None:
            raise RuntimeError(
                f"route gated on {gate.feature!r} is metered but the middleware has no tracker"
            )

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # Not a coroutine function: the decision is synchronous, so on the common paths (an
        # ungated route, an allowed request) this returns the wrapped app's own awaitable and
        # the middleware adds no coroutine frame to the request (marked below as a coroutine
        # function for servers that sniff ASGI 2 vs 3). Other outcomes return a coroutine.
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                return self._lifespan(scope, receive, send)
            return self.app(scope, receive, send)
        table = self._table or self._gates()
        seen = table.by_path.get(scope["path"])
        if seen is not None and seen[0] == scope["method"]:
            gate = seen[1]
        else:
            gate = table.resolve(scope)
            self._check_metered(gate)
        if gate is None:
            return self.app(scope, receive, send)
        try:
            ident = self.identify(scope)
        except IdentityError as exc:
            body = {"error": str(exc), "code": "unauthenticated", "feature": gate.feature}
            return _send_json(send, 401, body)
        if ident is None:
            company = user = None
        else:
            company, user = ident.company, ident.user
        replica = self.replica
        try:
            result = replica.check(company, user, gate.feature)
        except Exception:
            # A broken source (or engine bug) is "no decision possible", not a 500 for every route.
            log.exception("entitlement_check_failed", feature=gate.feature)
            result = None
        if result is None or result.err is not None:
            return self._undecided(gate, result, scope, receive, send)
        if not result.value:
            return self._refuse(gate, result, send)
        if gate.event is None and not replica.stale:
            return self.app(scope, receive, send)
        return self._call_wrapped(gate, company, user, scope, receive, send)

    async def _call_wrapped(
        self, gate: Gate, company: Any, user: Any, scope: Scope, receive: Receive, send: Send
    ) -> None:
        status = 0
        stale = self.replica.stale

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if stale:
                    message["headers"] = [*message.get("headers", ()), _STALE]
            await send(message)

        await self.app(scope, receive, watch)
        if gate.event is not None and 200 <= status < 300 and self.tracker is not None:
            self.tracker.track(company, user, gate.event, gate.quantity)

    async def _refuse(self, gate: Gate, result: CheckFlagResult, send: Send) -> None:
        billing = result.entitlement is not None or self.replica.is_billing_flag(gate.feature)
        ent = result.entitlement
        usage, allocation = result.feature_usage, result.feature_allocation
        if ent is not None:
            usage = ent.usage if usage is None else usage
            allocation = ent.allocation if allocation is None else allocation
        exceeded = (result.rule_type or "").endswith("_usage_exceeded") or (
            usage is not None and allocation is not None and usage >= allocation
        )
        if not billing:
            status, code, message = 403, "feature_disabled", f"{gate.feature} is not enabled for this account"
        elif exceeded:
            status, code, message = (
                402,
                "usage_limit_reached",
                f"the {gate.feature} usage limit has been reached",
            )
        else:
            status, code, message = (
                402,
                "feature_not_entitled",
                f"the current plan does not include {gate.feature}",
            )
        body: dict[str, Any] = {
            "error": message,
            "code": code,
            "feature": gate.feature,
            "reason": result.reason,
            "usage": usage,
            "allocation": allocation,
            "upgrade_url": None,
            "stale": self.replica.stale,
        }
        if billing and self.upgrade_url is not None:
            body["upgrade_url"] = self.upgrade_url.replace("{feature}", gate.feature)
        await _send_json(send, status, body, stale=self.replica.stale)

    async def _undecided(
        self, gate: Gate, result: CheckFlagResult | None, scope: Scope, receive: Receive, send: Send
    ) -> None:
        why = "no entitlement data yet" if result is None else str(result.err)
        if gate.fail == "open":

            async def mark(message: Message) -> None:
                if message["type"] == "http.response.start":
                    message["headers"] = [*message.get("headers", ()), _UNAVAILABLE]
                await send(message)

            log.debug("entitlement_fail_open", feature=gate.feature, why=why)
            await self.app(scope, receive, mark)
            return
        body = {
            "error": f"entitlements unavailable: {why}",
            "code": "entitlements_unavailable",
            "feature": gate.feature,
        }
        await _send_json(send, 503, body, extra=[_UNAVAILABLE])

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def wrapped() -> Message:
            message = await receive()
            if message["type"] == "lifespan.startup":
                # In the serving process (after any fork): start the feed and give it a moment,
                # so the first requests are decided from data rather than by the fail mode.
                if not await anyio.to_thread.run_sync(self.replica.wait_ready, self.startup_timeout):
                    log.warning("replica_not_ready_at_startup", timeout=self.startup_timeout)
            elif message["type"] == "lifespan.shutdown":
                if self.tracker is not None:
                    await anyio.to_thread.run_sync(self.tracker.close)
                await anyio.to_thread.run_sync(self.replica.close)
            return message

        await self.app(scope, wrapped, send)


# Servers (uvicorn) and frameworks tell an ASGI 3 app from an ASGI 2 one with
# ``asyncio.iscoroutinefunction``: keep answering yes for ``__call__``.
if hasattr(inspect, "markcoroutinefunction"):  # Python 3.12+
    inspect.markcoroutinefunction(EntitlementMiddleware.__call__)
else:
    EntitlementMiddleware.__call__._is_coroutine = asyncio.coroutines._is_coroutine  # type: ignore[attr-defined]


async def _send_json(
    send: Send,
    status: int,
    body: dict[str, Any],
    *,
    stale: bool = False,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    payload = json.dumps(body).encode()
    headers = [_JSON, (b"content-length", str(len(payload)).encode())]
    if stale:
        headers.append(_STALE)
    if extra:
        headers.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
