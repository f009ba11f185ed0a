"""Reconciliation: Events API replay, the resumable sweep, and `syncd reconcile --verify/--repair`."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import Session, col, delete
from structlog.testing import capture_logs

from syncd.models import CompanyPlan, SyncCursor, utcnow
from syncd.stripe_sync.mapping import ts
from syncd.stripe_sync.replay import CURSOR, replay_events
from syncd.stripe_sync.sweep import sweep

from ..cli_helpers import run_cli, syncd_env
from .harness import World


def test_replay_fills_missed_webhooks_and_dedupes_late_deliveries(world: World) -> None:
    ids = world.catalog()
    cus = world.customer()
    world.client.v1.subscriptions.create({"customer": cus, "items": [{"price": ids["pro_price"]}]})
    # No webhook delivered: the Events API is the only source.
    result = replay_events(world.engine, world.client, now_ts=world.now)
    assert result.stored == result.listed > 0
    assert {e.source for e in world.inbox()} == {"events_api"}
    world.apply()
    assert world.company(cus).base == "pro"

    before = len(world.inbox())
    world.flush()  # the webhooks arrive after all: duplicates, no-ops
    assert len(world.inbox()) == before
    again = replay_events(world.engine, world.client, now_ts=world.now)
    assert again.stored == 0 and again.listed > 0  # the overlap window re-reads, dedupes


def test_replay_warns_when_nobody_replayed_for_25_days(world: World) -> None:
    replay_events(world.engine, world.client, now_ts=world.now)
    with Session(world.engine) as session:
        row = session.get(SyncCursor, CURSOR)
        assert row is not None
        row.updated_at = utcnow() - timedelta(days=26)
        session.add(row)
        session.commit()
    with capture_logs() as logs:
        replay_events(world.engine, world.client, now_ts=world.now)
    assert any(entry["event"] == "stripe_events_cursor_stale" for entry in logs)


def test_sweep_backfills_and_resumes_after_an_interruption(world: World) -> None:
    ids = world.catalog()
    customers = [world.customer(name=f"C{n}") for n in range(5)]
    for cus in customers:
        world.client.v1.subscriptions.create({"customer": cus, "items": [{"price": ids["pro_price"]}]})

    def crash(kind: str, n: int) -> None:
        if kind == "customer":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sweep(world.engine, world.client, page_size=2, now=ts(world.now), on_progress=crash)
    result = sweep(world.engine, world.client, page_size=2, now=ts(world.now))
    assert result.resumed == ["customer"]
    assert result.objects["customer"] == 3  # two were committed before the crash
    assert result.objects["subscription"] == 5
    assert {world.company(c).base for c in customers} == {"pro"}
    again = sweep(world.engine, world.client, now=ts(world.now))  # a new sweep starts over
    assert again.resumed == [] and again.objects["customer"] == 5


def test_verify_and_repair_through_the_cli(world: World, tmp_path: Path) -> None:
    ids = world.catalog()
    cus = world.customer()
    world.client.v1.subscriptions.create({"customer": cus, "items": [{"price": ids["pro_price"]}]})
    world.sync()
    env = syncd_env(
        tmp_path,
        SYNCD_DATABASE_URL=str(world.engine.url),
        SYNCD_CATALOG_PATH="",
        SYNCD_STRIPE_API_KEY="sk_test_emulator",
        SYNCD_STRIPE_API_BASE=world.server.url,
        SYNCD_STRIPE_REQUESTS_PER_SECOND="1000",
    )
    # Divergence: a subscription syncd never heard of, and a plan assignment lost locally.
    other = world.customer(name="Missed Co")
    missed = world.client.v1.subscriptions.create(
        {"customer": other, "items": [{"price": ids["analytics_price"]}]}
    )
    with Session(world.engine) as session:
        session.exec(delete(CompanyPlan).where(col(CompanyPlan.source) == "billing"))  # type: ignore[call-overload]
        session.commit()

    diff = run_cli("reconcile", "--verify", env=env)
    assert diff.returncode == 1, diff.stdout + diff.stderr
    assert f"subscription {missed.id}: missing locally" in diff.stdout
    assert f"customer {cus}: billing plans differ" in diff.stdout

    fixed = run_cli("reconcile", "--repair", env=env)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert world.company(cus).base == "pro"
    assert world.company(other).add_ons == ["analytics"]

    after = run_cli("reconcile", "--verify", env=env)
    assert after.returncode == 0, after.stdout + after.stderr
    assert "0 difference(s)" in after.stdout
