"""The middleware on the example host app, with an in-process replica (no Redis needed)."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import datetime as dt
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.endpoints import HTTPEndpoint
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Mount, Route

from examples.host_app.app import UPGRADE_URL, create_app
from syncd.engine.wire import Subscription
from syncd_asgi import (
    EntitlementMiddleware,
    FrozenKeys,
    GateRule,
    Identity,
    Replica,
    UsageTracker,
    api_key_identity,
    header_identity,
    jwt_claim_identity,
    requires_feature,
)
from tests.adapters.asgi_support import CALL_LIMIT, Receiver, acme, company, flags, freebie, wait_for

pytestmark = pytest.mark.anyio

ACME = {"x-company-key": "acme"}
FREE = {"x-company-key": "freebie"}


def loaded_replica() -> Replica:
    replica = Replica(loader=lambda: (flags(), [acme(), freebie()], []))
    replica.start()
    return replica


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    yield rec
    rec.close()


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://host")


async def test_free_route_and_boolean_gate() -> None:
    async with client(create_app(loaded_replica())) as c:
        assert (await c.get("/")).status_code == 200
        ok = await c.get("/sso", headers=ACME)
        assert ok.status_code == 200
        assert ok.json() == {"sso": "configured"}
        assert "syncd-entitlements" not in ok.headers
        refused = await c.get("/sso", headers=FREE)
        assert refused.status_code == 402
        body = refused.json()
        assert body["code"] == "feature_not_entitled"
        assert body["feature"] == "sso"
        assert body["reason"] == "No rules matched; default value for flag"
        assert body["upgrade_url"] == UPGRADE_URL.replace("{feature}", "sso")
        assert body["stale"] is False
        # No company at all, or an unknown one: checked without company context -> refused.
        assert (await c.get("/sso")).status_code == 402
        assert (await c.get("/sso", headers={"x-company-key": "nobody"})).status_code == 402


async def test_non_billing_flag_refusal_is_403_without_upgrade_hint() -> None:
    async with client(create_app(loaded_replica())) as c:
        assert (await c.get("/dashboard", headers=ACME)).json() == {"dashboard": "new"}
        refused = await c.get("/dashboard", headers=FREE)
        assert refused.status_code == 403
        assert refused.json()["code"] == "feature_disabled"
        assert refused.json()["upgrade_url"] is None
        # The config rule names GET (so HEAD too): other methods are not gated (405 from the router).
        assert (await c.head("/dashboard", headers=FREE)).status_code == 403
        assert (await c.post("/dashboard", headers=FREE)).status_code == 405


async def test_metered_route_tracks_successes_and_limit_bites_locally(receiver: Receiver) -> None:
    replica = loaded_replica()
    tracker = UsageTracker(receiver.url, "sk_test", replica=replica, flush_interval=0.05, tick=0.01)
    async with client(create_app(replica, tracker=tracker)) as c:
        failed = await c.post("/query?fail=1", headers=ACME)
        assert failed.status_code == 500
        # acme has used 1 of 3: two more successes are allowed.
        for _ in range(CALL_LIMIT - 1):
            assert (await c.post("/query", headers=ACME)).status_code == 200
        # The optimistic bump reaches the replica within a tick, before any refresh from syncd.
        wait_for(lambda: not replica.check({"id": "acme"}, None, "api-calls").value)  # type: ignore[union-attr]
        refused = await c.post("/query", headers=ACME)
        assert refused.status_code == 402
        body = refused.json()
        assert body["code"] == "usage_limit_reached"
        assert (body["usage"], body["allocation"]) == (CALL_LIMIT, CALL_LIMIT)
        assert "Matched plan entitlement usage exceeded rule" in body["reason"]
    wait_for(lambda: len(receiver.events) == CALL_LIMIT - 1)
    tracker.close()
    events = receiver.events
    assert len(events) == CALL_LIMIT - 1  # the 500 and the refusal did not count
    for event in events:
        assert event["type"] == "track"
        assert event["api_key"] == "sk_test"
        assert event["body"] == {"event": "api-call", "quantity": 1, "company": {"id": "acme"}}
    assert len({e["idempotency_key"] for e in events}) == len(events)
    assert receiver.headers[0]["X-Schematic-Api-Key"] == "sk_test"


async def test_batches_hold_at_most_100_events_and_survive_a_failing_receiver() -> None:
    receiver = Receiver(statuses=[503, 503, 503, 503])  # one full round of retries fails
    tracker = UsageTracker(receiver.url, "sk", flush_interval=3600, tick=3600, attempts=3, backoff=0.01)
    try:
        for _ in range(250):
            tracker.track({"id": "acme"}, None, "api-call")
        tracker.flush()  # 3 attempts at the first chunk, all 503: everything stays buffered
        assert receiver.posts == []
        tracker.flush()
        assert [len(p["events"]) for p in receiver.posts] == [100, 100, 50]
        assert tracker.sent == 250
    finally:
        tracker.close()
        receiver.close()


async def test_fail_closed_and_fail_open_without_data() -> None:
    empty = Replica()  # nothing loaded yet in this process
    tracker = UsageTracker("http://127.0.0.1:9", "k", attempts=1)
    async with client(create_app(empty, tracker=tracker)) as c:
        closed = await c.get("/sso", headers=ACME)
        assert closed.status_code == 503
        assert closed.json()["code"] == "entitlements_unavailable"
        opened = await c.post("/query", headers=ACME)  # the metered route is fail-open
        assert opened.status_code == 200
        assert opened.headers["syncd-entitlements"] == "unavailable"
    tracker.close()  # nothing listens there: the event stays undelivered
    assert tracker.sent == 0


async def test_a_failing_source_is_undecided() -> None:
    replica = loaded_replica()

    def broken(*args: object) -> None:
        raise RuntimeError("boom")

    replica.check = broken  # type: ignore[assignment,method-assign]
    tracker = UsageTracker("http://127.0.0.1:9", "k", attempts=1)
    async with client(create_app(replica, tracker=tracker)) as c:
        assert (await c.get("/sso", headers=ACME)).status_code == 503  # fail-closed route
        opened = await c.post("/query", headers=ACME)  # fail-open route
        assert (opened.status_code, opened.headers["syncd-entitlements"]) == (200, "unavailable")
    tracker.close()


async def test_unknown_flag_is_undecided() -> None:
    replica = loaded_replica()
    app = Starlette(
        routes=[Route("/x", requires_feature("no-such-flag")(lambda r: PlainTextResponse("x")))],
        middleware=[Middleware(EntitlementMiddleware, replica=replica)],
    )
    async with client(app) as c:
        response = await c.get("/x")
        assert response.status_code == 503
        assert "flag not found" in response.json()["error"]


async def test_stale_state_is_flagged() -> None:
    replica = loaded_replica()
    replica.stale = True  # what the Redis feed sets while cut off (tested end to end elsewhere)
    async with client(create_app(replica)) as c:
        ok = await c.get("/sso", headers=ACME)
        assert (ok.status_code, ok.headers["syncd-entitlements"]) == (200, "stale")
        refused = await c.get("/sso", headers=FREE)
        assert refused.headers["syncd-entitlements"] == "stale"
        assert refused.json()["stale"] is True


@requires_feature("sso")
class SsoEndpoint(HTTPEndpoint):
    async def get(self, request: Request) -> PlainTextResponse:
        return PlainTextResponse("class")

    @requires_feature("new-dashboard")
    async def post(self, request: Request) -> PlainTextResponse:
        return PlainTextResponse("method")


async def test_decorated_class_endpoints_mounts_and_path_params() -> None:
    async def item(request: Request) -> JSONResponse:
        return JSONResponse(request.path_params)

    inner = [
        Route("/items/{n:int}", requires_feature("sso")(item)),
        Route("/ep", SsoEndpoint, methods=["GET", "POST"]),
    ]
    app = Starlette(
        routes=[Mount("/api", routes=inner)],
        middleware=[
            Middleware(
                EntitlementMiddleware,
                replica=loaded_replica(),
                identify=lambda scope: Identity({"id": scope["query_string"].decode()}),
            )
        ],
    )
    async with client(app) as c:
        assert (await c.get("/api/items/7?acme")).json() == {"n": 7}
        assert (await c.get("/api/items/7?freebie")).status_code == 402
        assert (await c.get("/api/ep?freebie")).status_code == 402
        assert (await c.post("/api/ep?freebie")).status_code == 403  # the method's own gate: new-dashboard
        assert (await c.post("/api/ep?acme")).text == "method"


async def test_identity_helpers() -> None:
    keys = {"key_acme": Identity({"id": "acme"})}
    by_key = create_app(loaded_replica(), identify=api_key_identity(keys.get))
    async with client(by_key) as c:
        assert (await c.get("/sso", headers={"x-api-key": "key_acme"})).status_code == 200
        unknown = await c.get("/sso", headers={"x-api-key": "stolen"})
        assert (unknown.status_code, unknown.json()["code"]) == (401, "unauthenticated")

    class Claims:
        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            # Stands in for the host's auth layer, which verified the token.
            org = dict(scope["headers"]).get(b"x-org", b"").decode()
            scope.setdefault("state", {})["jwt_claims"] = {"sub": "u1", "org_id": org}
            await self.app(scope, receive, send)

    by_claim = Claims(create_app(loaded_replica(), identify=jwt_claim_identity("org_id")))
    async with client(by_claim) as c:
        assert (await c.get("/sso", headers={"x-org": "acme"})).status_code == 200
        assert (await c.get("/sso", headers={"x-org": "freebie"})).status_code == 402


def test_header_identity() -> None:
    def scope(*headers: tuple[bytes, bytes]) -> dict[str, Any]:
        return {"type": "http", "headers": list(headers)}

    company = header_identity("X-Company-Key", "account")
    first = company(scope((b"host", b"h"), (b"x-company-key", b"acme")))
    assert first == Identity({"account": "acme"})
    assert company(scope((b"x-company-key", b"acme"), (b"accept", b"*/*"))) is first  # reused
    assert company(scope((b"host", b"h"))) is None
    # A repeated header counts by its last value, with or without a user header configured.
    repeated = scope((b"x-company-key", b"acme"), (b"x-user", b"u1"), (b"x-company-key", b"free"))
    assert company(repeated) == Identity({"account": "free"})
    both = header_identity("x-company-key", "account", user_header="x-user", user_key="email")
    assert both(repeated) == Identity({"account": "free"}, {"email": "u1"})
    assert both(scope((b"x-user", b"u2"))) == Identity(None, {"email": "u2"})
    assert both(scope()) is None


async def test_config_rules_on_a_plain_asgi_app() -> None:
    async def bare(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    gated = EntitlementMiddleware(
        bare,
        loaded_replica(),
        identify=lambda scope: Identity({"id": "freebie"}),
        rules=[GateRule.of("/pro/{rest:path}", "sso", methods=["GET"])],
    )
    async with client(gated) as c:
        assert (await c.get("/open")).text == "ok"
        assert (await c.get("/pro/a/b")).status_code == 402
        assert (await c.put("/pro/a/b")).text == "ok"
        # Methods alternating on one path: each keeps its own gate.
        for _ in range(2):
            assert (await c.get("/pro/a/b")).status_code == 402
            assert (await c.put("/pro/a/b")).text == "ok"


def test_metered_gate_without_tracker_is_a_configuration_error() -> None:
    with pytest.raises(RuntimeError, match="no tracker"):
        EntitlementMiddleware(
            lambda s, r, se: None,  # type: ignore[arg-type,return-value]
            Replica(),
            rules=[GateRule.of("/m", "api-calls", event="api-call")],
        )._gates()


def test_updates_never_show_a_moment_without_the_company() -> None:
    replica = loaded_replica()
    stop = threading.Event()

    def rewrite() -> None:
        while not stop.is_set():
            replica.put_company(acme())

    writer = threading.Thread(target=rewrite)
    writer.start()
    try:
        answers = {replica.check({"id": "acme"}, None, "sso").value for _ in range(20_000)}  # type: ignore[union-attr]
    finally:
        stop.set()
        writer.join()
    assert answers == {True}


@pytest.mark.parametrize("make_keys", [dict, FrozenKeys], ids=["dict", "frozen"])
def test_repeated_checks_follow_every_write(monkeypatch: pytest.MonkeyPatch, make_keys: Any) -> None:
    # A repeated one-key check with the same FrozenKeys is answered from what the replica
    # remembered on them; every kind of write, and the end of the snapshot's validity, must
    # show through at once. Plain mappings give the same answers.
    replica = loaded_replica()
    acme_keys, free_keys = make_keys({"id": "acme"}), make_keys({"id": "freebie"})

    def check(keys: Any, flag: str) -> Any:
        result = replica.check(keys, None, flag)
        assert result is not None
        return result

    first = check(acme_keys, "sso")
    assert first.value is True and check(acme_keys, "sso") is first
    assert check(make_keys({"ID": "ACME"}), "sso").value is True  # keys match case-insensitively
    assert check(acme_keys, "new-dashboard").value is True
    assert check(make_keys({"id": "acme", "email": "x@acme.test"}), "sso").value is True  # two keys
    replica.put_company(company("co_acme", "acme", None))  # downgrade
    assert check(acme_keys, "sso").value is False
    assert check(acme_keys, "new-dashboard").value is True
    replica.put_company(acme(calls_used=CALL_LIMIT - 1))
    assert check(acme_keys, "api-calls").value is True
    replica.bump_usage("co_acme", "api-call", 1)  # the limit is reached
    assert check(acme_keys, "api-calls").value is False
    replica.remove_company("co_acme")
    assert check(acme_keys, "sso").company_id is None
    replica.put_company(acme())
    assert check(acme_keys, "sso").value is True
    # Two replicas deciding for the same keys do not take each other's answers.
    other = Replica(loader=lambda: (flags(), [company("co_acme", "acme", None)], []))
    for _ in range(3):
        assert check(acme_keys, "sso").value is True
        assert other.check(acme_keys, None, "sso").value is False  # type: ignore[union-attr]
    replica.set_flags([f for f in flags() if f.key != "sso"])
    assert check(acme_keys, "sso").err == "flag not found"
    replica.load(flags(), [freebie()])
    assert check(acme_keys, "sso").company_id is None
    assert check(free_keys, "sso").value is False
    # A subscription period ending in an hour bounds the snapshot's validity.
    now = dt.datetime.now(dt.UTC)
    period = Subscription("sub_1", now - dt.timedelta(days=1), now + dt.timedelta(hours=1))
    replica.load(flags(), [dataclasses.replace(acme(), subscription=period)])
    remembered = check(acme_keys, "sso")
    assert check(acme_keys, "sso") is remembered
    # Past the snapshot's validity the result is evaluated again (same verdict, new object).
    later_time = (now + dt.timedelta(hours=2)).timestamp()
    monkeypatch.setattr(time, "time", lambda: later_time)
    later = check(acme_keys, "sso")
    assert later is not remembered and later.value is True


def test_frozen_keys_cannot_change() -> None:
    keys = FrozenKeys({"id": "acme"})
    assert keys == {"id": "acme"} and isinstance(keys, dict)
    for change in (
        lambda: keys.__setitem__("id", "other"),
        lambda: keys.update(id="other"),
        lambda: keys.pop("id"),
        lambda: keys.popitem(),
        lambda: keys.setdefault("x", "y"),
        lambda: keys.clear(),
        lambda: keys.__delitem__("id"),
        lambda: keys.__ior__({"x": "y"}),
    ):
        with pytest.raises(TypeError):
            change()
    assert keys == {"id": "acme"}
    assert copy.deepcopy(keys) == keys and type(copy.copy(keys)) is FrozenKeys
    # header_identity hands out FrozenKeys (so the replica can remember its decisions).
    found = header_identity("x-company-key")({"type": "http", "headers": [(b"x-company-key", b"acme")]})
    assert found is not None and type(found.company) is FrozenKeys


def test_servers_see_an_asgi3_app() -> None:
    # __call__ returns the app's awaitable rather than being a coroutine function; servers
    # that sniff the interface (uvicorn) must still take the middleware for ASGI 3.
    middleware = EntitlementMiddleware(create_app(loaded_replica()), loaded_replica())
    assert asyncio.iscoroutinefunction(middleware.__call__)
    config = uvicorn.Config(middleware)
    config.load()
    assert config.interface == "asgi3"
