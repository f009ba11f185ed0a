"""Benchmark the Redis adapter: publishing one company change to Redis.

    python bench/bench_redis.py [--redis redis://127.0.0.1:6379/0] [--n 2000]

Prints p50/p99 for (a) the adapter's publish hook for one ``entitlements.changed`` row, with
the company's computed state already in memory (the Redis side: serialise, then one script
call that drops stale lookups and writes the document, lookups and the numbered change
message), (b) the same hook reading the company from a SQLite database with the demo catalog
through ``syncd.state`` (what the daemon does), and (c) a full resync of 1,000 companies. The
company in (a) and (c) is the realistic one from bench/_common.py (base plan, add-ons,
override, 20 flags). Keys use a throwaway prefix that
is deleted afterwards. Numbers only: nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import secrets
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import cast

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "adapters"))

import redis

from bench._common import NOW, build_catalog, build_company, percentiles, time_each
from syncd.daemon import Daemon
from syncd.engine import wire
from syncd.hookspecs import Change
from syncd_redis.plugin import RedisAdapter


class MemorySource:
    def __init__(self, flags: list[wire.Flag], companies: list[wire.Company]) -> None:
        self._flags = flags
        self._companies = {c.id: c for c in companies}

    def flags(self) -> list[wire.Flag]:
        return self._flags

    def companies(self, ids: Sequence[str]) -> dict[str, wire.Company]:
        return {i: self._companies[i] for i in ids if i in self._companies}

    def company_pages(self) -> Iterator[list[wire.Company]]:
        items = list(self._companies.values())
        for start in range(0, len(items), 500):
            yield items[start : start + 500]

    def catalog_changed(self) -> None:
        pass

    def next_boundary(self, company_id: str) -> float | None:
        return None

    def users(self, ids: Sequence[str]) -> dict[str, wire.User]:
        return {}

    def user_pages(self) -> Iterator[list[wire.User]]:
        return iter(())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args()

    catalog = build_catalog()
    companies = [build_company(catalog, i) for i in range(1000)]
    for c in companies:
        c.keys = {"domain": f"c{c.id}.example.com", "stripe_customer_id": f"cus_{c.id}"}
    source = MemorySource(catalog.flags, companies)
    prefix = f"bench{secrets.token_hex(4)}"
    adapter = RedisAdapter(args.redis, key_prefix=prefix, source=lambda _d: source)
    adapter.syncd_startup(cast(Daemon, None))
    try:
        t0 = time.perf_counter()
        adapter.syncd_resync()
        resync_s = time.perf_counter() - t0
        one = companies[0]
        doc_bytes = len(adapter.writer.client.get(adapter.layout.entity("company", one.id)) or b"")
        change = [
            Change(seq=1, topic="entitlements.changed", company_id=one.id, created_at=dt.datetime.now(dt.UTC))
        ]
        time_each(lambda: adapter.syncd_publish(change), 200)  # warm up connection and scripts
        p50, p99 = percentiles(time_each(lambda: adapter.syncd_publish(change), args.n))
        print(
            f"company document: {doc_bytes} bytes, {len(one.entitlements)} entitlements,"
            f" {len(one.rules)} rules"
        )
        print(f"publish one company change (n={args.n}): p50 {p50 / 1000:.3f} ms, p99 {p99 / 1000:.3f} ms")
        print(
            f"full resync, {len(companies)} companies + {len(catalog.flags)} flags: {resync_s * 1000:.0f} ms"
        )
        with_database(args.redis, prefix, max(args.n // 10, 50))
    finally:
        client = redis.Redis.from_url(args.redis)
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
        adapter.syncd_shutdown()


def with_database(redis_url: str, prefix: str, n: int) -> None:
    """The publish hook as the daemon runs it: load the company from SQLite, then write it."""
    import tempfile

    from pydantic import SecretStr

    from syncd.config import CatalogSettings, DatabaseSettings, Settings
    from syncd.db import session_scope
    from syncd.services.companies import upsert_company
    from syncd_redis.source import DatabaseSource

    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            database=DatabaseSettings(url=SecretStr(f"sqlite:///{tmp}/bench.db")),
            catalog=CatalogSettings(path=str(root / "config" / "catalog.toml")),
        )
        daemon = Daemon(settings)
        daemon.prepare()
        with session_scope(daemon.engine) as session:
            row, _ = upsert_company(session, keys={"account": "acme"}, name="Acme", traits={"beta": True})
        adapter = RedisAdapter(redis_url, key_prefix=prefix, source=lambda _d: DatabaseSource(daemon.engine))
        adapter.syncd_startup(daemon)
        try:
            change = [Change(seq=1, topic="entitlements.changed", company_id=row.id, created_at=NOW)]
            time_each(lambda: adapter.syncd_publish(change), 10)
            p50, p99 = percentiles(time_each(lambda: adapter.syncd_publish(change), n))
            print(f"publish one company change incl. loading it from SQLite (n={n}): p50 {p50 / 1000:.3f} ms,"
                  f" p99 {p99 / 1000:.3f} ms")  # fmt: skip
        finally:
            adapter.syncd_shutdown()
            daemon.close()


if __name__ == "__main__":
    main()
