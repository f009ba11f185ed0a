"""Stripe answering 429/5xx to 30% of calls: `syncd backfill` still completes, never exceeds
the configured request rate, writes nothing to Stripe and nothing twice locally."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from sqlmodel import Session, col, func, select

from syncd.db import make_engine
from syncd.models import CompanyKey, CompanyPlan, Plan

from ..cli_helpers import run_cli, syncd_env
from .conftest import RecordingEmulator, customers_with_plans, prepare_database, stripe_catalog

RATE = 4.0  # [stripe] requests_per_second for the backfill (low: so pacing is what is tested)


def test_backfill_completes_under_30_percent_errors_within_the_rate_without_duplicates(
    emulator: RecordingEmulator, sqlite_url: str, tmp_path: Path, soak: bool
) -> None:
    client = emulator.client()
    ids = stripe_catalog(client)
    customers = customers_with_plans(client, ids, 1000 if soak else 120)
    prepare_database(sqlite_url, ids)
    # 15% 429 (Retry-After: 0, so the client's own backoff applies) + 15% 503 of what is left.
    emulator.faults(
        rate_limit_fraction=0.15, server_error_fraction=0.18, server_error_status=503, retry_after=0
    )
    first = len(emulator.calls)
    env = syncd_env(
        tmp_path,
        SYNCD_DATABASE_URL=sqlite_url,
        SYNCD_CATALOG_PATH="",
        SYNCD_STRIPE_API_KEY="sk_test_emulator",
        SYNCD_STRIPE_API_BASE=emulator.url,
        SYNCD_STRIPE_REQUESTS_PER_SECOND=str(RATE),
        SYNCD_STRIPE_MAX_NETWORK_RETRIES="6",
    )
    t0 = time.monotonic()
    done = run_cli("backfill", "--restart", env=env, timeout=600)
    elapsed = time.monotonic() - t0
    assert done.returncode == 0, done.stdout + done.stderr
    calls = [c for c in emulator.calls[first:] if c.path.startswith("/v1/")]
    injected = httpx_faults(emulator)
    emulator.faults()  # all off again
    print(
        f"backfill: {len(calls)} Stripe calls in {elapsed:.1f}s, injected {injected}; {done.stdout.strip()}"
    )

    # About 30% of the calls failed, and the sweep completed anyway.
    assert injected["rate_limit"] + injected["server_error"] >= 0.2 * len(calls) > 0
    # The configured rate held: no one-second window saw more than RATE (+ the bucket's burst).
    times = [c.at for c in calls]
    window = max(sum(1 for u in times if t <= u < t + 1.0) for t in times)
    assert window <= 2 * RATE, window  # the token bucket's burst is one second's worth
    assert len(calls) <= RATE * (times[-1] - times[0]) + 2 * RATE
    # A sweep only reads: not one write reached Stripe.
    assert Counter(c.method for c in calls) == {"GET": len(calls)}

    # Locally: one company per customer, each with the plans Stripe says, nothing twice.
    engine = make_engine(sqlite_url)
    with Session(engine) as session:
        per_customer = Counter(
            session.exec(select(CompanyKey.value).where(col(CompanyKey.key) == "stripe_customer_id")).all()
        )
        keys = {p.id: p.key for p in session.exec(select(Plan)).all()}
        rows = session.exec(select(CompanyPlan)).all()
        billing = Counter((r.company_id, r.plan_id) for r in rows if r.source == "billing")
        bases = Counter(r.company_id for r in rows if r.role == "base")
        companies = session.exec(select(func.count()).select_from(CompanyKey)).one()
    engine.dispose()
    assert set(per_customer) == set(customers) and set(per_customer.values()) == {1}
    assert companies >= len(customers)
    assert set(billing.values()) == {1}  # no plan assigned twice
    assert set(bases.values()) == {1}  # exactly one base plan per company
    subscribed = {keys[plan] for (_company, plan) in billing}
    assert subscribed == {"pro", "enterprise", "analytics"}
    # And the result is what Stripe holds (checked with the faults off).
    verify = run_cli("reconcile", "--verify", env=env, timeout=600)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "0 difference(s)" in verify.stdout


def httpx_faults(emulator: RecordingEmulator) -> dict[str, int]:
    injected: dict[str, int] = dict(emulator.emulator.faults.injected)
    return injected
