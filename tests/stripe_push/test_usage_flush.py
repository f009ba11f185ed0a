"""Usage flush to Stripe meters: outage then recovery, crash after send, 35-day window,
corrections; meter totals in the emulator always equal the local counts exactly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlmodel import Session, col, select

from syncd.db import session_scope
from syncd.models import StripeMeterBatch, UsageEvent
from syncd.services.companies import upsert_company
from syncd.services.metering import TrackInput, track_events
from syncd.stripe_push.flush import FlushResult, _send_one, cancel_usage, flush_usage, stage
from syncd.stripe_push.meters import metered_events
from tests.stripe_sync.harness import World

from .helpers import catalog


def to_dt(value: int) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def company(world: World, name: str) -> tuple[str, str]:
    customer = world.customer(name=name)
    with session_scope(world.engine) as session:
        row, _ = upsert_company(session, keys={"stripe_customer_id": customer}, name=name)
        return row.id, customer


def track(world: World, company_id: str, quantities: list[int], *, hours_ago: list[float]) -> None:
    now = to_dt(world.now)
    events = [
        TrackInput(company_id, "api_call", q, now - timedelta(hours=h))
        for q, h in zip(quantities, hours_ago, strict=True)
    ]
    with session_scope(world.engine) as session:
        track_events(session, events, {company_id: None}, now)


def stripe_total(world: World, customer: str) -> float:
    meter = next(m for m in world.client.v1.billing.meters.list().data if m.event_name == "api_call")
    summaries = world.client.v1.billing.meters.event_summaries.list(
        meter.id, {"customer": customer, "start_time": world.now - 40 * 86400, "end_time": world.now + 3600}
    )
    return sum(s.aggregated_value for s in summaries.data)


def local_total(world: World, company_id: str, *, within_days: int = 35) -> int:
    cutoff = to_dt(world.now) - timedelta(days=within_days)
    with Session(world.engine) as session:
        rows = session.exec(select(UsageEvent).where(col(UsageEvent.company_id) == company_id)).all()
        return sum(r.quantity for r in rows if r.occurred_at.replace(tzinfo=cutoff.tzinfo) >= cutoff)


def flush(world: World) -> FlushResult:
    return flush_usage(world.engine, world.client, now=to_dt(world.now))


def test_outage_mid_flush_then_recovery_counts_once(world: World) -> None:
    outage_then_recovery(world)


def test_outage_mid_flush_then_recovery_on_postgres(pg_world: World) -> None:
    outage_then_recovery(pg_world)


def outage_then_recovery(world: World) -> None:
    catalog(world)
    a, cus_a = company(world, "A")
    b, cus_b = company(world, "B")
    track(world, a, [5, 7, 11], hours_ago=[30, 5.5, 0.2])
    first = flush(world)
    assert first.meters_created == ["api_call"] and first.sent == 3 and first.pending == 0
    assert stripe_total(world, cus_a) == 23

    # More usage in several windows, then an outage on meter events: 5 errors outlast the
    # SDK's 2 retries of the first batch, so the run stops with the rest pending.
    track(world, a, [1, 2, 3], hours_ago=[20, 10, 2.5])
    track(world, b, [100, 200], hours_ago=[3.5, 1.5])
    world.faults(server_error_count=5, paths=["/v1/billing/meter_events"])
    broken = flush(world)
    assert broken.error is not None and broken.pending == 5
    recovered = flush(world)  # the last 2 errors are absorbed by the client's retries
    assert recovered.error is None and recovered.pending == 0 and recovered.sent == 5
    world.faults()
    assert flush(world).sent == 0  # nothing left, nothing re-sent
    assert stripe_total(world, cus_a) == local_total(world, a) == 29
    assert stripe_total(world, cus_b) == local_total(world, b) == 300


def test_crash_after_stripe_accepted_is_not_double_counted(world: World) -> None:
    catalog(world)
    a, cus_a = company(world, "A")
    track(world, a, [4, 6], hours_ago=[3, 1])
    with session_scope(world.engine) as session:
        stage(session, to_dt(world.now), metered_events(session))
    flush(world)  # creates the meter, sends both
    track(world, a, [10], hours_ago=[0.5])
    with session_scope(world.engine) as session:
        stage(session, to_dt(world.now), metered_events(session))
    with Session(world.engine) as session:
        pending = session.exec(
            select(StripeMeterBatch).where(col(StripeMeterBatch.status) == "pending")
        ).one()
        _send_one(world.client, pending)  # Stripe got it; syncd "crashed" before recording that
    result = flush(world)
    assert result.duplicates + result.sent == 1  # replayed under its idempotency key
    assert stripe_total(world, cus_a) == local_total(world, a) == 20


def test_usage_older_than_35_days_is_skipped_and_recorded(world: World) -> None:
    catalog(world)
    a, cus_a = company(world, "A")
    track(world, a, [50, 3], hours_ago=[36 * 24, 1])
    result = flush(world)
    assert result.sent == 1 and result.skipped == 1
    with Session(world.engine) as session:
        skipped = session.exec(
            select(StripeMeterBatch).where(col(StripeMeterBatch.status) == "skipped")
        ).one()
    assert skipped.value == 50 and "35-day" in (skipped.note or "")
    assert stripe_total(world, cus_a) == 3


def test_correction_cancels_and_restages(world: World) -> None:
    catalog(world)
    a, cus_a = company(world, "A")
    track(world, a, [4, 6, -2], hours_ago=[1.2, 1.1, 1.05])
    flush(world)
    assert stripe_total(world, cus_a) == 8  # a negative delta nets within its window
    with Session(world.engine) as session:
        wrong = session.exec(select(UsageEvent).where(col(UsageEvent.quantity) == 6)).one()
    assert cancel_usage(world.engine, world.client, [int(wrong.id or 0)]) == 1
    flush(world)
    assert stripe_total(world, cus_a) == 2


def test_identifier_dedupe_when_idempotency_key_is_gone(world: World) -> None:
    """Stripe prunes idempotency keys after 24 h; the batch identifier still dedupes."""
    catalog(world)
    a, cus_a = company(world, "A")
    track(world, a, [9], hours_ago=[2])
    flush(world)
    track(world, a, [1], hours_ago=[0.5])
    with session_scope(world.engine) as session:
        stage(session, to_dt(world.now), metered_events(session))
    with Session(world.engine) as session:
        batch = session.exec(select(StripeMeterBatch).where(col(StripeMeterBatch.status) == "pending")).one()
        world.client.v1.billing.meter_events.create(
            {
                "event_name": "api_call",
                "identifier": batch.identifier,
                "timestamp": batch.timestamp,
                "payload": {"stripe_customer_id": cus_a, "value": "1"},
            }
        )
    result = flush(world)
    assert result.duplicates == 1 and result.sent == 0
    assert stripe_total(world, cus_a) == local_total(world, a) == 10


def test_scheduled_job_body_flushes_with_the_daemon_client(world: World) -> None:
    from syncd import jobs

    catalog(world)
    result = jobs._flush_usage(world.daemon)
    assert isinstance(result, FlushResult) and result.meters_created == ["api_call"]
