"""Redis down: the adapter's batches wait (cursor unmoved, backoff) and nothing is lost once it is back."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from pydantic import SecretStr
from redis.backoff import NoBackoff
from redis.retry import Retry

from syncd.config import CatalogSettings, DatabaseSettings, Settings
from syncd.daemon import Daemon
from syncd.db import session_scope
from syncd.engine import wire
from syncd.services.changes import entitlements_changed
from syncd_redis.plugin import RedisAdapter

from .conftest import FakeSource, company

V = wire.ENGINE_VERSION_KEY


@pytest.fixture
def daemon(tmp_path: Path, redis_url: str, prefix: str, source: FakeSource) -> Iterator[Daemon]:
    adapter = RedisAdapter(redis_url, key_prefix=prefix, source=lambda _d: source)
    settings = Settings(
        database=DatabaseSettings(url=SecretStr(f"sqlite:///{tmp_path / 'syncd.db'}")),
        catalog=CatalogSettings(path=None),
        plugins={"redis": {"retry_initial_s": 0.05, "retry_max_s": 0.05}},
    )
    made = Daemon(settings, extra_plugins={"redis": adapter})
    made.prepare()
    yield made
    made.close()


def test_redis_outage_loses_nothing(
    daemon: Daemon, source: FakeSource, rclient: redis.Redis, prefix: str
) -> None:
    assert daemon.plugins is not None and daemon.publisher is not None
    adapter = daemon.plugins.pm.get_plugin("redis")
    assert isinstance(adapter, RedisAdapter)
    live = adapter.writer.client
    adapter.writer.client = redis.Redis.from_url(
        "redis://127.0.0.1:1", socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0)
    )
    source.company_map = {"comp_a": company("comp_a", n="a")}
    with session_scope(daemon.engine) as session:
        entitlements_changed(session, ["comp_a", "comp_b"])
    source.company_map["comp_b"] = company("comp_b", n="b")
    pump = daemon.publisher
    assert pump.run("redis") == 0  # the start-up resync fails: nothing published, cursor unmoved
    assert pump.cursor("redis") == 0
    assert 'syncd_delivery_failures_total{adapter="redis"} 1.0' in daemon.metrics.render().decode()
    adapter.writer.client = live
    deadline = time.monotonic() + 5
    while pump.cursor("redis") < 2 and time.monotonic() < deadline:
        time.sleep(0.06)
        pump.run("redis")
    assert pump.cursor("redis") == 2
    assert rclient.get(f"{prefix}:company:{V}:n:a") == '"comp_a"'
    assert rclient.get(f"{prefix}:company:{V}:n:b") == '"comp_b"'
