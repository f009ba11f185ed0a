"""Baseline (a): the hand-rolled pattern of ``shared/seeds/002_*``, on the real Redis and Postgres.

The pattern, as the seed shows it:

* every access check does ``redis.get("entitlements:<customer>")`` (the plan's limits as JSON,
  filled from the database on a miss) and then a SQL ``COUNT`` of this month's usage rows for
  the customer and feature, and answers ``usage < limit``;
* tracking inserts one usage row per event;
* a ``customer.subscription.updated`` webhook looks the plan up by price id, upserts the
  customer's entitlements row and deletes the Redis key.

It runs against the same data as syncd's benchmark company (``bench._common``): the same
limits (the most generous of base plan, add-ons and override) and the same number of usage rows
this month. Everything is measured single-threaded on one connection, like one request.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
import redis

from bench._common import percentiles, time_each
from syncd.engine.wire import Company

SCHEMA = """
CREATE TABLE plans (id text PRIMARY KEY, stripe_price_id text UNIQUE, limits jsonb NOT NULL);
CREATE TABLE entitlements (customer_id text PRIMARY KEY, plan_id text NOT NULL, limits jsonb NOT NULL);
CREATE TABLE usage (id bigserial PRIMARY KEY, customer_id text NOT NULL, feature text NOT NULL,
                    ts timestamptz NOT NULL DEFAULT now());
CREATE INDEX usage_customer_feature_ts ON usage (customer_id, feature, ts);
"""
COUNT_SQL = (
    "SELECT count(*) FROM usage WHERE customer_id = %s AND feature = %s AND ts >= date_trunc('month', now())"
)


@dataclass(slots=True)
class HandRolled:
    pg: psycopg.Connection[Any]
    redis: redis.Redis
    prefix: str

    def key(self, customer: str) -> str:
        return f"{self.prefix}:entitlements:{customer}"

    def check_access(self, customer: str, feature: str) -> bool:
        raw = self.redis.get(self.key(customer))
        if raw is None:
            row = self.pg.execute(
                "SELECT limits FROM entitlements WHERE customer_id = %s", (customer,)
            ).fetchone()
            assert row is not None
            raw = json.dumps(row[0]).encode()
            self.redis.set(self.key(customer), raw, ex=300)
        limit = json.loads(raw)[feature]
        usage = self.pg.execute(COUNT_SQL, (customer, feature), prepare=True).fetchone()
        assert usage is not None
        return bool(usage[0] < limit)

    def track_usage(self, customer: str, feature: str) -> None:
        self.pg.execute(
            "INSERT INTO usage (customer_id, feature) VALUES (%s, %s)", (customer, feature), prepare=True
        )

    def on_subscription_updated(self, customer: str, price_id: str) -> None:
        plan = self.pg.execute(
            "SELECT id, limits FROM plans WHERE stripe_price_id = %s", (price_id,)
        ).fetchone()
        assert plan is not None
        self.pg.execute(
            "INSERT INTO entitlements (customer_id, plan_id, limits) VALUES (%s, %s, %s) "
            "ON CONFLICT (customer_id) DO UPDATE SET plan_id = excluded.plan_id, limits = excluded.limits",
            (customer, plan[0], json.dumps(plan[1])),
            prepare=True,
        )
        self.redis.delete(self.key(customer))


def limits_of(company: Company) -> dict[str, float]:
    """The company's effective allocation per feature (what the hand-rolled JSON would hold)."""
    out: dict[str, float] = {}
    for ent in company.entitlements:
        alloc = ent.allocation
        out[ent.feature_key] = float("inf") if alloc is None or alloc < 0 else float(alloc)
    return out


def _pg_url(sqlalchemy_url: str) -> str:
    return sqlalchemy_url.replace("postgresql+psycopg://", "postgresql://")


@contextmanager
def handrolled(
    postgres_url: str, redis_url: str, company: Company, feature: str, event: str
) -> Iterator[HandRolled]:
    """A fresh database and Redis prefix seeded with ``company``'s limits and this month's usage."""
    admin = psycopg.connect(_pg_url(postgres_url), autocommit=True)
    name = f"syncd_bench_handrolled_{secrets.token_hex(4)}"
    admin.execute(f'CREATE DATABASE "{name}"')  # DDL: identifiers cannot be bound parameters
    client = redis.Redis.from_url(redis_url)
    prefix = f"benchhr{secrets.token_hex(4)}"
    pg = psycopg.connect(_pg_url(postgres_url).rsplit("/", 1)[0] + f"/{name}", autocommit=True)
    try:
        pg.execute(SCHEMA)
        limits = {k: (v if v != float("inf") else 1e18) for k, v in limits_of(company).items()}
        customer = company.id
        pg.execute("INSERT INTO plans VALUES ('pro', 'price_pro', %s)", (json.dumps(limits),))
        pg.execute("INSERT INTO entitlements VALUES (%s, 'pro', %s)", (customer, json.dumps(limits)))
        used = next(int(m.value) for m in company.metrics if m.event_subtype == event)
        start = dt.datetime.now(dt.UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        with pg.cursor() as cur:
            cur.executemany(
                "INSERT INTO usage (customer_id, feature, ts) VALUES (%s, %s, %s)",
                [(customer, feature, start + dt.timedelta(seconds=i)) for i in range(used)],
            )
            # Last month's rows, which the COUNT must skip through its index.
            cur.executemany(
                "INSERT INTO usage (customer_id, feature, ts) VALUES (%s, %s, %s)",
                [(customer, feature, start - dt.timedelta(hours=i + 1)) for i in range(used)],
            )
        pg.execute("ANALYZE")
        yield HandRolled(pg, client, prefix)
    finally:
        pg.close()
        keys = list(client.scan_iter(match=f"{prefix}:*"))
        if keys:
            client.delete(*keys)
        client.close()
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def measure(hr: HandRolled, customer: str, feature: str, n: int) -> dict[str, float]:
    """Latencies (µs) of the three hand-rolled operations, warm."""
    check = hr.check_access
    time_each(lambda: check(customer, feature), min(200, n))
    c50, c99 = percentiles(time_each(lambda: check(customer, feature), n))
    track = hr.track_usage
    tracked = time_each(lambda: track(customer, feature), n)
    t50, t99 = percentiles(tracked)
    upd = hr.on_subscription_updated
    updated = time_each(lambda: upd(customer, "price_pro"), n)
    u50, u99 = percentiles(updated)
    return {
        "check_p50_us": c50,
        "check_p99_us": c99,
        "track_p50_us": t50,
        "track_p99_us": t99,
        "track_per_s": n / (sum(tracked) / 1e9),
        "webhook_p50_us": u50,
        "webhook_p99_us": u99,
        "webhook_per_s": n / (sum(updated) / 1e9),
    }
