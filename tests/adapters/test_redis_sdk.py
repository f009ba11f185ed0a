"""End to end: syncd writes Redis, the official schematichq SDK in replicator mode evaluates from it.

A real daemon (SQLite, demo catalog, the Redis adapter loaded from its entry point, plus a test
adapter that fails) serves ``/ready`` over HTTP; the SDK polls it for ``cache_version`` and
reads companies and flags from syncd's Redis with its own ``RedisCache``, evaluating locally
with its WebAssembly engine. Its API base URL is a dead port, so any fallback to a network
call would show up as an error answer instead of silently agreeing.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
import uvicorn
from pydantic import SecretStr
from redis.asyncio import Redis as AsyncRedis
from schematic.cache import RedisCache
from schematic.client import AsyncSchematic, AsyncSchematicConfig, DataStreamConfig
from sqlmodel import select

from syncd.api import create_app
from syncd.apikeys import create_key
from syncd.config import CatalogSettings, DatabaseSettings, RedisSettings, SchedulerSettings, Settings
from syncd.daemon import Daemon
from syncd.db import session_scope
from syncd.hookspecs import Change, hookimpl
from syncd.models import Feature, Plan
from syncd.services.companies import delete_company, upsert_company
from syncd.services.company_plans import update_company_plans
from syncd.services.inputs import EntitlementValue
from syncd.services.overrides import create_company_override
from syncd.services.users import upsert_user

from ..conftest import free_port

DEMO_CATALOG = str(Path(__file__).resolve().parents[2] / "config" / "catalog.toml")
FLAGS = ("api-calls", "seats", "sso", "ai-assistant", "advanced-analytics", "new-dashboard")
DEAD = "http://127.0.0.1:1"


class Flaky:
    """An adapter whose target is down for its first two attempts."""

    def __init__(self) -> None:
        self.failures = 2
        self.published: list[int] = []

    @hookimpl
    def syncd_publish(self, changes: Sequence[Change]) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("webhook receiver down")
        self.published.extend(c.seq for c in changes)


@dataclass
class Running:
    daemon: Daemon
    base_url: str
    prefix: str
    flaky: Flaky
    api_key: str

    def pump(self) -> None:
        assert self.daemon.publisher is not None
        self.daemon.publisher.run_all()  # the flaky adapter fails first, in the same run
        self.daemon.store.follow()


@pytest.fixture
def running(tmp_path: Path, redis_url: str, prefix: str) -> Iterator[Running]:
    flaky = Flaky()
    settings = Settings(
        database=DatabaseSettings(url=SecretStr(f"sqlite:///{tmp_path / 'syncd.db'}")),
        catalog=CatalogSettings(path=DEMO_CATALOG),
        scheduler=SchedulerSettings(enabled=False),
        redis=RedisSettings(url=SecretStr(redis_url)),
        plugins={"redis": {"key_prefix": prefix}, "flaky": {"retry_initial_s": 0.05, "retry_max_s": 0.05}},
    )
    daemon = Daemon(settings, extra_plugins={"flaky": flaky})
    daemon.prepare()
    with session_scope(daemon.engine) as session:
        api_key = create_key(session, "secret", name="sdk")[1]
    port = free_port()
    config = uvicorn.Config(create_app(daemon), host="127.0.0.1", port=port, log_config=None, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield Running(daemon, f"http://127.0.0.1:{port}", prefix, flaky, api_key)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        daemon.close()


@contextlib.asynccontextmanager
async def replicator_sdk(run: Running) -> AsyncIterator[AsyncSchematic]:
    """The official SDK in replicator mode on syncd's Redis (same prefix) and syncd's /ready."""
    client_redis = AsyncRedis.from_url(_url(run))
    caches = {
        name: RedisCache(client_redis, prefix=run.prefix)
        for name in ("company_cache", "company_lookup_cache", "user_cache", "user_lookup_cache", "flag_cache")
    }
    config = AsyncSchematicConfig(
        base_url=DEAD,
        event_capture_url=run.base_url,  # flag_check events go to syncd, which accepts them
        use_datastream=True,
        datastream=DataStreamConfig(
            replicator_mode=True, replicator_health_url=f"{run.base_url}/ready", **caches
        ),
    )
    try:
        async with AsyncSchematic(run.api_key, config) as client:
            ds = client._datastream_client
            assert ds is not None and ds.is_replicator_ready()
            assert ds.replicator_cache_version == run.daemon.cache_version
            yield client
    finally:
        await client_redis.aclose()


def _url(run: Running) -> str:
    assert run.daemon.settings.redis.url is not None
    return run.daemon.settings.redis.url.get_secret_value()


USER = {"email": "Ann@Acme.example"}  # a member of the first company


async def assert_same_as_syncd(
    sdk: AsyncSchematic, run: Running, companies: Sequence[dict[str, str]]
) -> None:
    for i, keys in enumerate(companies):
        user = USER if i == 0 else None
        for flag in FLAGS:
            theirs = await sdk.check_flag_with_entitlement(flag, company=keys, user=user)
            ours = run.daemon.store.check(keys, user, flag)
            assert not theirs.reason.lower().startswith("error"), (flag, theirs.reason)
            assert (flag, theirs.value) == (flag, ours.value), (keys, theirs.reason, ours.reason)
            assert (theirs.company_id, theirs.user_id) == (ours.company_id, ours.user_id)
    assert run.daemon.store.check(companies[0], USER, FLAGS[0]).user_id is not None


def _ids(run: Running, model: type[Plan] | type[Feature], key: str) -> str:
    with session_scope(run.daemon.engine) as session:
        return session.exec(select(model.id).where(model.key == key)).one()


def test_sdk_in_replicator_mode_agrees_with_syncd_and_follows_changes(running: Running) -> None:
    asyncio.run(_scenario(running))


async def _scenario(run: Running) -> None:
    publisher = run.daemon.publisher
    assert publisher is not None
    start = publisher.cursor("flaky")  # a new adapter starts at the end of the log
    companies = [
        {"account": "acme-1", "domain": "Acme.example"},  # free, opted into beta
        {"account": "globex-2"},  # enterprise
        {"account": "initech-3"},  # free with an SSO override
        {"account": "nobody-4"},  # unknown to syncd: the SDK sees no company
    ]
    enterprise, sso = _ids(run, Plan, "enterprise"), _ids(run, Feature, "sso")
    with session_scope(run.daemon.engine) as session:
        upsert_company(session, keys=companies[0], name="Acme", traits={"beta": True})
        upsert_user(session, keys=USER, name="Ann", company=companies[0])
        globex, _ = upsert_company(session, keys=companies[1], name="Globex")
        initech, _ = upsert_company(session, keys=companies[2], name="Initech")
    with session_scope(run.daemon.engine) as session:
        update_company_plans(session, globex.id, base_plan_id=enterprise, add_on_ids=[])
        create_company_override(
            session, company_id=initech.id, feature_id=sso, value=EntitlementValue("boolean", value_bool=True)
        )
    run.pump()  # start-up resync, then the changes
    async with replicator_sdk(run) as sdk:
        await _rounds(sdk, run, companies, initech.id, globex.id, enterprise)
    _check_flaky(run, start)


async def _rounds(
    sdk: AsyncSchematic,
    run: Running,
    companies: list[dict[str, str]],
    initech: str,
    globex: str,
    enterprise: str,
) -> None:
    await assert_same_as_syncd(sdk, run, companies)
    answers = {
        flag: run.daemon.store.check(companies[2], None, flag).value for flag in ("sso", "new-dashboard")
    }
    assert answers == {"sso": True, "new-dashboard": False}  # the cases really differ

    # Upgrades and deletions reach the SDK through the change log.
    with session_scope(run.daemon.engine) as session:
        update_company_plans(session, initech, base_plan_id=enterprise, add_on_ids=[])
        delete_company(session, globex)
    run.pump()
    assert run.daemon.store.check(companies[2], None, "new-dashboard").value is True
    await assert_same_as_syncd(sdk, run, companies)
    client = redis.Redis.from_url(_url(run))
    assert client.get(f"{run.prefix}:company:{run.daemon.cache_version}:account:globex-2") is None
    client.close()


def _check_flaky(run: Running, start: int) -> None:
    # The failing adapter never held the Redis adapter back, and gets every change once it recovers.
    publisher = run.daemon.publisher
    assert publisher is not None
    assert publisher.cursor("flaky") == start and run.flaky.published == []
    deadline = time.monotonic() + 5
    while publisher.cursor("flaky") < publisher.cursor("redis") and time.monotonic() < deadline:
        publisher.run("flaky")
        time.sleep(0.06)
    assert run.flaky.published == list(range(start + 1, publisher.cursor("redis") + 1))
