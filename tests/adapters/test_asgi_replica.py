"""The Redis-fed replica against the real Redis: load, change stream, gaps, outage and recovery."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import httpx
import pytest
from starlette.types import Message

from examples.host_app.app import create_app
from syncd_asgi import RedisReplica
from tests.adapters.asgi_support import (
    TcpProxy,
    Writer,
    acme,
    company,
    flags,
    prefix,
    user,
    wait_for,
)

pytestmark = pytest.mark.redis
ACME, FREE = {"id": "acme"}, {"id": "freebie"}


@pytest.fixture
def writer(redis_url: str) -> Iterator[Writer]:
    w = Writer(redis_url, prefix())
    w.seed()
    yield w
    w.cleanup()


@pytest.fixture
def replica(writer: Writer, redis_url: str) -> Iterator[RedisReplica]:
    rep = RedisReplica(redis_url, prefix=writer.p, block_seconds=0.2)
    assert rep.wait_ready(5)
    yield rep
    rep.close()


def value(rep: RedisReplica, keys: dict[str, str], flag: str) -> bool:
    result = rep.check(keys, None, flag)
    assert result is not None
    return result.value


def test_loads_everything_at_start(replica: RedisReplica, writer: Writer, redis_url: str) -> None:
    assert value(replica, ACME, "sso") is True
    assert value(replica, FREE, "sso") is False
    assert value(replica, ACME, "new-dashboard") is True
    assert replica.reloads == 1
    assert not replica.stale
    # The prefix may be given with or without its trailing colon (syncd's config has none).
    bare = RedisReplica(redis_url, prefix=writer.p.rstrip(":"))
    try:
        assert bare.wait_ready(5)
        assert value(bare, ACME, "sso") is True
    finally:
        bare.close()


def test_follows_company_user_flag_and_delete_changes(writer: Writer, replica: RedisReplica) -> None:
    writer.put_company(company("co_free", "freebie", "pro"))  # upgrade
    wait_for(lambda: value(replica, FREE, "sso"), timeout=2)
    # A key change: the old key no longer finds the company, the new one does.
    writer.put_company(dataclasses.replace(company("co_free", "freebie", "pro"), keys={"id": "renamed"}))
    wait_for(lambda: value(replica, {"id": "renamed"}, "sso") and not value(replica, FREE, "sso"), timeout=2)
    writer.delete_company(acme())
    wait_for(lambda: replica.company("co_acme") is None and not value(replica, ACME, "sso"), timeout=2)
    writer.put_user(user("u1", "a@example.com"))
    wait_for(lambda: replica.check(None, {"email": "A@example.com"}, "sso").user_id == "u1", timeout=2)  # type: ignore[union-attr]
    writer.delete_user(user("u1", "a@example.com"))
    wait_for(lambda: replica.check(None, {"email": "a@example.com"}, "sso").user_id is None, timeout=2)  # type: ignore[union-attr]
    # Flags: sso turned on for everyone by a global override.
    sso = flags()[0]
    override = dataclasses.replace(sso.rules[0], id="rule_all", rule_type="global_override", conditions=[])
    writer.put_flags([dataclasses.replace(sso, rules=[override])])
    wait_for(lambda: value(replica, {"id": "nobody"}, "sso"), timeout=2)
    assert replica.reloads == 1  # all of it incrementally


def test_gap_in_sequence_triggers_full_reload(writer: Writer, replica: RedisReplica) -> None:
    # A change whose message is lost (seq taken, nothing appended), then a later message.
    writer.put_company(company("co_free", "freebie", "pro"), announce=False)
    writer.r.incr(f"{writer.p}syncd:seq")
    writer.put_user(user("u1", "a@example.com"))
    wait_for(lambda: replica.reloads == 2, timeout=3)
    assert value(replica, FREE, "sso") is True  # the unannounced change came in with the reload


def test_lost_tail_and_resync_trigger_reload(writer: Writer, replica: RedisReplica) -> None:
    # The counter moved on but no message ever arrives: noticed on idle polls.
    writer.put_company(company("co_free", "freebie", "pro"), announce=False)
    writer.r.incr(f"{writer.p}syncd:seq")
    wait_for(lambda: replica.reloads == 2, timeout=3)
    assert value(replica, FREE, "sso") is True
    writer.publish("resync")
    wait_for(lambda: replica.reloads == 3, timeout=3)


def test_redis_outage_serves_stale_last_known_state_then_recovers(writer: Writer, redis_url: str) -> None:
    host, port = redis_url.split("//")[1].split("/")[0].split(":")
    proxy = TcpProxy((host, int(port)))
    proxy.start()
    rep = RedisReplica(proxy.url, prefix=writer.p, block_seconds=0.2, socket_timeout=0.5)
    try:
        assert rep.wait_ready(5)
        proxy.stop()
        wait_for(lambda: rep.stale, timeout=3)
        assert value(rep, ACME, "sso") is True  # last-known state still answers
        assert value(rep, FREE, "sso") is False
        writer.put_company(company("co_free", "freebie", "pro"))  # changes during the outage
        proxy.start()
        took = wait_for(lambda: not rep.stale and value(rep, FREE, "sso"), timeout=5)
        assert took < 5
        assert rep.reloads == 1  # caught up from the stream, no reload needed
    finally:
        rep.close()
        proxy.stop()


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_example_app_on_redis_flags_stale_responses(writer: Writer, redis_url: str) -> None:
    host, port = redis_url.split("//")[1].split("/")[0].split(":")
    proxy = TcpProxy((host, int(port)))
    proxy.start()
    rep = RedisReplica(proxy.url, prefix=writer.p, block_seconds=0.2, socket_timeout=0.5)
    transport = httpx.ASGITransport(app=create_app(rep))
    try:
        assert rep.wait_ready(5)
        async with httpx.AsyncClient(transport=transport, base_url="http://host") as c:
            assert (await c.get("/sso", headers={"x-company-key": "freebie"})).status_code == 402
            proxy.stop()
            wait_for(lambda: rep.stale, timeout=3)
            stale = await c.get("/sso", headers={"x-company-key": "acme"})
            assert (stale.status_code, stale.headers["syncd-entitlements"]) == (200, "stale")
            proxy.start()
            wait_for(lambda: not rep.stale, timeout=5)
            fresh = await c.get("/sso", headers={"x-company-key": "acme"})
            assert "syncd-entitlements" not in fresh.headers
    finally:
        rep.close()
        proxy.stop()


def test_redis_reset_is_detected(writer: Writer, replica: RedisReplica, redis_url: str) -> None:
    writer.put_user(user("u1", "a@example.com"))
    wait_for(lambda: replica.check(None, {"email": "a@example.com"}, "sso").user_id == "u1", timeout=2)  # type: ignore[union-attr]
    # Redis lost everything (our keys, stream and counter) and the writer rewrote its state.
    writer.cleanup()
    again = Writer(redis_url, writer.p)
    again.put_flags(flags(), announce=False)
    again.put_company(company("co_new", "newco", "pro"), announce=False)
    wait_for(lambda: value(replica, {"id": "newco"}, "sso"), timeout=3)
    assert replica.company("co_acme") is None
    assert replica.reloads == 2
    again.cleanup()


def test_redis_down_at_start_fails_closed_then_loads_when_it_comes_up(writer: Writer, redis_url: str) -> None:
    host, port = redis_url.split("//")[1].split("/")[0].split(":")
    proxy = TcpProxy((host, int(port)))
    proxy.start()
    proxy.stop()  # the port is known, nothing listens
    rep = RedisReplica(proxy.url, prefix=writer.p, block_seconds=0.2, socket_timeout=0.5)
    try:
        assert not rep.wait_ready(0.3)
        assert rep.check(ACME, None, "sso") is None  # no decision possible: the route's fail mode applies
        assert not rep.stale  # nothing known yet, so nothing stale either
        proxy.start()
        wait_for(lambda: rep.ready, timeout=5)
        assert value(rep, ACME, "sso") is True
    finally:
        rep.close()
        proxy.stop()


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_lifespan_waits_for_the_first_load_and_shutdown_closes(writer: Writer, redis_url: str) -> None:
    rep = RedisReplica(redis_url, prefix=writer.p, block_seconds=0.2)
    app = create_app(rep)
    incoming: list[Message] = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[Message] = []
    ready_at_startup: list[bool] = []

    async def receive() -> Message:
        if len(incoming) == 1:  # startup has been handled by now
            ready_at_startup.append(rep.ready)
        return incoming.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert ready_at_startup == [True]
    assert rep._thread is None  # the feed was stopped at shutdown
