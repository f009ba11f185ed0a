"""Recompute every company after a plan version publish, on Postgres.

Seeds N companies (default 100,000) on the demo catalog in a fresh Postgres database, spread
over Free / Pro / Enterprise with keys, a seats trait and a month of API-call counters, then:

1. cold start: ``EntitlementStore.load()`` (catalog + every company + every snapshot);
2. publish: apply the demo catalog with Pro's limits raised and ``migration = "immediate"``
   (a new Pro version; every Pro company moves to it), then ``store.follow()`` until every
   company's snapshot reflects the new state.

Usage:  python bench/bench_recompute.py [--companies 100000] [--url postgresql+psycopg://...]
Target (issue #3): recompute 100,000 companies after a plan version publish <= 20 s.
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import secrets
import time
from pathlib import Path

from sqlalchemy import create_engine, insert, select, text
from sqlmodel import Session

from syncd import migrate
from syncd.catalog import apply_catalog, load_catalog, loads
from syncd.db import make_engine
from syncd.models import Company, CompanyKey, CompanyMetric, CompanyPlan, CompanyTrait, Plan, TraitDefinition
from syncd.services.company_plans import published_version
from syncd.state import EntitlementStore

ROOT = Path(__file__).resolve().parents[1]
ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def seed(url: str, n: int) -> None:
    engine = make_engine(url)
    migrate.upgrade(engine)
    with Session(engine) as session:
        apply_catalog(session, load_catalog(ROOT / "config" / "catalog.toml"))
        session.commit()
        plans = {p.key: p for p in session.exec(select(Plan)).scalars()}  # type: ignore[call-overload]
        versions = {k: published_version(session, p.id) for k, p in plans.items()}
        seats = (
            session.exec(select(TraitDefinition).where(TraitDefinition.name == "seats_used")).scalars().one()
        )  # type: ignore[call-overload,arg-type]
    now = dt.datetime.now(dt.UTC)
    month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    order = ("free", "pro", "pro", "enterprise")
    chunk = 10_000
    with engine.begin() as conn:
        for start in range(0, n, chunk):
            ids = [f"comp_bench{i:08d}" for i in range(start, min(n, start + chunk))]
            conn.execute(
                insert(Company), [{"id": c, "name": c, "created_at": now, "updated_at": now} for c in ids]
            )
            conn.execute(insert(CompanyKey), [{"company_id": c, "key": "id", "value": c} for c in ids])
            rows = []
            for i, c in enumerate(ids):
                key = order[(start + i) % len(order)]
                v = versions[key]
                assert v is not None
                rows.append(
                    {
                        "id": f"cpln_{c}",
                        "company_id": c,
                        "plan_id": plans[key].id,
                        "plan_version_id": v.id,
                        "role": "base",
                        "source": "manual",
                        "quantity": 1,
                        "created_at": now,
                        "updated_at": now,
                    }
                )
            conn.execute(insert(CompanyPlan), rows)
            conn.execute(
                insert(CompanyTrait),
                [
                    {
                        "company_id": c,
                        "trait_definition_id": seats.id,
                        "value": str(i % 12),
                        "updated_at": now,
                    }
                    for i, c in enumerate(ids)
                ],
            )
            conn.execute(
                insert(CompanyMetric),
                [
                    {
                        "company_id": c,
                        "event_subtype": "api-call",
                        "period": "current_month",
                        "month_reset": "billing_cycle",
                        "period_start": month,
                        "value": (i * 37) % 60_000,
                        "updated_at": now,
                    }
                    for i, c in enumerate(ids)
                ],
            )
    engine.dispose()


def published_catalog(everyone: bool = False) -> str:
    """Pro's limits raised, its companies migrated; ``everyone``: Free and Enterprise too, so
    every company moves to a new version."""
    text_ = (ROOT / "config" / "catalog.toml").read_text()
    text_ = text_.replace('migration = "leave"', 'migration = "immediate"')
    text_ = text_.replace(
        'api-calls = { type = "numeric", value = 50000,', 'api-calls = { type = "numeric", value = 75000,'
    )
    if everyone:
        text_ = text_.replace('icon = "seedling"', 'icon = "seedling"\nmigration = "immediate"')
        text_ = text_.replace(
            'api-calls = { type = "numeric", value = 1000,', 'api-calls = { type = "numeric", value = 2000,'
        )
        text_ = text_.replace('credit = "ai-credits", rate = 0.5', 'credit = "ai-credits", rate = 0.4')
    return text_


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--companies", type=int, default=100_000)
    parser.add_argument("--url", help="an empty Postgres database (default: a fresh one on 127.0.0.1)")
    parser.add_argument(
        "--everyone", action="store_true", help="publish new versions of every plan: all companies move"
    )
    args = parser.parse_args()
    name = None
    url = args.url
    admin = create_engine(ADMIN, isolation_level="AUTOCOMMIT")
    if url is None:
        name = f"syncd_bench_{secrets.token_hex(4)}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = ADMIN.rsplit("/", 1)[0] + f"/{name}"
    try:
        t = time.perf_counter()
        seed(url, args.companies)
        print(f"seeded {args.companies:,} companies in {time.perf_counter() - t:.1f} s")
        engine = make_engine(url)
        store = EntitlementStore(engine)
        t = time.perf_counter()
        store.load()
        loaded = time.perf_counter() - t
        while store.warm(10_000):
            pass
        cold = time.perf_counter() - t
        print(
            f"cold start: state loaded {loaded:6.2f} s; every snapshot built {cold:6.2f} s "
            f"({cold / args.companies * 1e6:.0f} us/company)"
        )
        pro_company = "comp_bench00000001"
        before = store.check({"id": pro_company}, None, "api-calls")
        t = time.perf_counter()
        with Session(engine) as session:
            diff = apply_catalog(session, loads(published_catalog(args.everyone)))
            session.commit()
        applied = time.perf_counter() - t
        while store.follow():  # the change log in batches, as the daemon's follower reads it
            pass
        current = time.perf_counter() - t
        after = store.check({"id": pro_company}, None, "api-calls")
        store.refresh_expired()  # reload every company the publish marked stale
        while store.warm(10_000):
            pass
        total = time.perf_counter() - t
        assert before.entitlement is not None and after.entitlement is not None
        assert (before.entitlement.allocation, after.entitlement.allocation) == (50_000, 75_000), (
            before,
            after,
        )
        moved = sum(len(m.company_ids) for m in diff.migrations)
        print(f"publish (catalog apply, {moved:,} companies migrated): {applied:6.2f} s")
        print(f"publish -> change logged and followed (moved companies marked stale): {current:6.2f} s")
        print(
            f"publish -> every snapshot recomputed: {total:6.2f} s   target <= 20 s: "
            f"{'met' if total <= 20 else 'NOT met'}"
        )
        print(f"peak RSS: {rss_mb():.0f} MB")
        engine.dispose()
    finally:
        if name is not None:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
