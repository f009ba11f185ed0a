"""End to end through syncd's Redis adapter: a real daemon (SQLite, demo catalog, Redis adapter
from its entry point) writes Redis; the example host app's ``RedisReplica`` follows it; metered
usage goes back to the daemon's ``/batch`` and returns through Redis."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis
import uvicorn
from pydantic import SecretStr
from sqlmodel import select

from examples.host_app.app import create_app
from syncd.api import create_app as create_api
from syncd.apikeys import create_key
from syncd.config import CatalogSettings, DatabaseSettings, RedisSettings, SchedulerSettings, Settings
from syncd.daemon import Daemon
from syncd.db import session_scope
from syncd.models import Plan
from syncd.services.companies import upsert_company
from syncd.services.company_plans import update_company_plans
from syncd_asgi import RedisReplica, UsageTracker, header_identity
from tests.adapters.asgi_support import wait_for
from tests.conftest import free_port

pytestmark = [pytest.mark.redis, pytest.mark.anyio]
DEMO_CATALOG = str(Path(__file__).resolve().parents[2] / "config" / "catalog.toml")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Syncd:
    daemon: Daemon
    base_url: str
    api_key: str

    def pump(self) -> None:
        """What the daemon's scheduler does: follow the change log, publish to the adapters."""
        assert self.daemon.publisher is not None
        self.daemon.store.follow()
        self.daemon.publisher.run_all()


@pytest.fixture
def syncd(tmp_path: Path, redis_url: str) -> Iterator[Syncd]:
    key_prefix = f"t{secrets.token_hex(4)}"  # the daemon's config style: no trailing colon
    settings = Settings(
        database=DatabaseSettings(url=SecretStr(f"sqlite:///{tmp_path / 'syncd.db'}")),
        catalog=CatalogSettings(path=DEMO_CATALOG),
        scheduler=SchedulerSettings(enabled=False),
        redis=RedisSettings(url=SecretStr(redis_url)),
        plugins={"redis": {"key_prefix": key_prefix}},
    )
    daemon = Daemon(settings)
    daemon.prepare()
    with session_scope(daemon.engine) as session:
        api_key = create_key(session, "secret", name="host-app")[1]
    port = free_port()
    config = uvicorn.Config(create_api(daemon), host="127.0.0.1", port=port, log_config=None, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield Syncd(daemon, f"http://127.0.0.1:{port}", api_key)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        daemon.close()
        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(match=f"{key_prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


def _usage(replica: RedisReplica, keys: dict[str, str]) -> int | None:
    result = replica.check(keys, None, "api-calls")
    assert result is not None and result.entitlement is not None
    return result.entitlement.usage


async def test_plan_change_and_usage_round_trip_through_syncd_redis(syncd: Syncd, redis_url: str) -> None:
    acme, globex = {"account": f"acme-{secrets.token_hex(3)}"}, {"account": f"globex-{secrets.token_hex(3)}"}
    with session_scope(syncd.daemon.engine) as session:
        acme_row, _ = upsert_company(session, keys=acme, name="Acme")
        upsert_company(session, keys=globex, name="Globex")
        enterprise = session.exec(select(Plan.id).where(Plan.key == "enterprise")).one()
    syncd.pump()
    prefix = syncd.daemon.settings.plugin_config("redis")["key_prefix"]
    replica = RedisReplica(redis_url, prefix=prefix, block_seconds=0.2)
    tracker = UsageTracker(syncd.base_url, syncd.api_key, replica=replica, flush_interval=0.05, tick=0.01)
    app = create_app(replica, tracker=tracker, identify=header_identity("x-company-key", "account"))
    try:
        assert replica.wait_ready(5)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://host"
        ) as client:
            assert (await client.get("/sso", headers={"x-company-key": acme["account"]})).status_code == 402
            # A plan change in syncd reaches the host app through Redis and its change stream.
            with session_scope(syncd.daemon.engine) as session:
                update_company_plans(session, acme_row.id, base_plan_id=enterprise, add_on_ids=[])
            syncd.pump()
            wait_for(lambda: replica.check(acme, None, "sso").value, timeout=5)  # type: ignore[union-attr]
            assert (await client.get("/sso", headers={"x-company-key": acme["account"]})).status_code == 200
            # Metered usage: counted locally at once, sent to syncd's /batch, back through Redis.
            for _ in range(2):
                assert (
                    await client.post("/query", headers={"x-company-key": globex["account"]})
                ).status_code == 200
            wait_for(lambda: tracker.sent == 2, timeout=5)
            syncd.pump()
            wait_for(lambda: syncd.daemon.store.check(globex, None, "api-calls").entitlement.usage == 2)  # type: ignore[union-attr]
            wait_for(lambda: replica.reloads == 1 and _usage(replica, globex) == 2, timeout=5)
            time.sleep(0.3)  # the authoritative copy replaced the optimistic one: still 2, not 4
            assert _usage(replica, globex) == 2
    finally:
        tracker.close()
        replica.close()
