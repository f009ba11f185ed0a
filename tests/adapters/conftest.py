"""Redis adapter fixtures: a unique key prefix per test on the shared Redis, and a hand-fed source."""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sequence
from typing import Any, cast

import pytest
import redis

from syncd.daemon import Daemon
from syncd.engine import wire
from syncd_redis.plugin import RedisAdapter


class FakeSource:
    """A StateSource fed by the test; pages of two so batching is exercised."""

    def __init__(self) -> None:
        self.flag_list: list[wire.Flag] = []
        self.company_map: dict[str, wire.Company] = {}
        self.user_map: dict[str, wire.User] = {}
        self.boundary_map: dict[str, float] = {}
        self.catalog_reloads = 0

    def flags(self) -> list[wire.Flag]:
        return list(self.flag_list)

    def companies(self, ids: Sequence[str]) -> dict[str, wire.Company]:
        return {i: self.company_map[i] for i in ids if i in self.company_map}

    def company_pages(self) -> Iterator[list[wire.Company]]:
        items = [self.company_map[k] for k in sorted(self.company_map)]
        for start in range(0, len(items), 2):
            yield items[start : start + 2]

    def catalog_changed(self) -> None:
        self.catalog_reloads += 1

    def next_boundary(self, company_id: str) -> float | None:
        return self.boundary_map.get(company_id)

    def users(self, ids: Sequence[str]) -> dict[str, wire.User]:
        return {i: self.user_map[i] for i in ids if i in self.user_map}

    def user_pages(self) -> Iterator[list[wire.User]]:
        items = [self.user_map[k] for k in sorted(self.user_map)]
        for start in range(0, len(items), 2):
            yield items[start : start + 2]


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    value = f"t{secrets.token_hex(4)}"
    yield value
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{value}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def rclient(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def source() -> FakeSource:
    return FakeSource()


@pytest.fixture
def adapter(redis_url: str, prefix: str, source: FakeSource) -> Iterator[RedisAdapter]:
    made = RedisAdapter(redis_url, key_prefix=prefix, source=lambda _daemon: source)
    made.syncd_startup(cast(Daemon, None))
    yield made
    made.syncd_shutdown()


def company(cid: str, **keys: str) -> wire.Company:
    return wire.Company(
        id=cid,
        keys=dict(keys),
        plan_ids=["plan_pro"],
        entitlements=[wire.FeatureEntitlement("feat_1", "seats", "numeric", allocation=5, usage=2)],
    )


def flag(key: str, default: bool = False) -> wire.Flag:
    return wire.Flag(id=f"flag_{key}", key=key, default_value=default)


def stream(client: redis.Redis, prefix: str) -> list[dict[str, Any]]:
    return [fields for _id, fields in client.xrange(f"{prefix}:syncd:changes")]
