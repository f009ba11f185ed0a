"""Usage flush to Stripe meters: outage then recovery, crash after send, 35-day window,
corrections; meter totals in the emulator always equal the local counts exactly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from sqlmodel import Session, col, select

from syncd.apikeys import create_key
from syncd.db import session_scope
from syncd.models import StripeMeterBatch, UsageEvent
from syncd.services.companies import upsert_company
from syncd.services.metering import TrackInput, track_events
from syncd.stripe_push.flush import FlushResult, _send_one, flush_usage, stage
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


class Ingest:
    """``POST /batch`` on the world's daemon with a secret key, dated by ``sent_at``."""

    def __init__(self, world: World) -> None:
        with session_scope(world.engine) as session:
            key = create_key(session, "secret", name="corrections")[1]
        self.world = world
        self.http = httpx.Client(base_url=world.url, headers={"X-Schematic-Api-Key": key}, timeout=30)

    def track(self, customer: str, quantity: int, at: datetime) -> None:
        event = {
            "type": "track",
            "body": {"event": "api_call", "company": {"stripe_customer_id": customer}, "quantity": quantity},
            "sent_at": at.isoformat(),
            "trusted_client_clock": True,
        }
        response = self.http.post("/batch", json={"events": [event]})
        assert response.status_code == 200, response.text


def hourly(world: World, company_id: str, customer: str) -> tuple[dict[int, float], dict[int, int]]:
    """(Stripe's per-hour sums, the local per-hour sums), over the last 3 days, non-zero hours."""
    meter = next(m for m in world.client.v1.billing.meters.list().data if m.event_name == "api_call")
    start = world.now // 3600 * 3600 - 3 * 86400
    summaries = world.client.v1.billing.meters.event_summaries.list(
        meter.id,
        {
            "customer": customer,
            "start_time": start,
            "end_time": start + 4 * 86400,
            "value_grouping_window": "hour",
        },
    )
    stripe_hours = {
        s.start_time: s.aggregated_value for s in summaries.auto_paging_iter() if s.aggregated_value
    }
    local: dict[int, int] = {}
    with Session(world.engine) as session:
        for row in session.exec(select(UsageEvent).where(col(UsageEvent.company_id) == company_id)).all():
            hour = int(row.occurred_at.replace(tzinfo=UTC).timestamp()) // 3600 * 3600
            local[hour] = local.get(hour, 0) + row.quantity
    return stripe_hours, {h: v for h, v in local.items() if v}


def test_correction_after_the_cancel_window_is_a_negative_meter_event(world: World) -> None:
    correction_after_the_cancel_window(world)


def test_correction_after_the_cancel_window_on_postgres(pg_world: World) -> None:
    correction_after_the_cancel_window(pg_world)


def correction_after_the_cancel_window(world: World) -> None:
    """A correction of usage Stripe received days ago, through the SDK ingest path."""
    catalog(world)
    customer = world.customer(name="A")
    ingest = Ingest(world)
    hour_ago = to_dt(world.now) - timedelta(minutes=50)
    ingest.track(customer, 4, hour_ago)
    ingest.track(customer, 6, hour_ago)
    ingest.track(customer, 3, hour_ago - timedelta(hours=2))
    assert flush(world).sent == 2
    company_id = world.company(customer).id
    assert stripe_total(world, customer) == local_total(world, company_id) == 13

    world.advance(2)  # past Stripe's 24-hour cancel window
    ingest.track(customer, -6, hour_ago)  # the 6 was wrong
    result = flush(world)
    assert result.sent == 1 and result.corrections == 1 and result.error is None
    assert stripe_total(world, customer) == local_total(world, company_id) == 7
    stripe_hours, local_hours = hourly(world, company_id, customer)
    assert stripe_hours == local_hours and sorted(local_hours.values()) == [3, 4]
    assert not any(e["_canceled"] for e in world.emu.meter_events)  # no adjustment was made
    assert flush(world).sent == 0


def test_correction_nets_with_unflushed_usage_of_its_hour(world: World) -> None:
    catalog(world)
    customer = world.customer(name="A")
    ingest = Ingest(world)
    at = to_dt(world.now) - timedelta(minutes=30)
    ingest.track(customer, 10, at)
    flush(world)
    ingest.track(customer, 5, at)  # not flushed yet ...
    ingest.track(customer, -8, at)  # ... when the correction comes: one meter event of -3
    result = flush(world)
    assert result.sent == 1 and result.corrections == 1
    with Session(world.engine) as session:
        values = sorted(b.value for b in session.exec(select(StripeMeterBatch)).all())
    assert values == [-3, 10]
    company_id = world.company(customer).id
    assert stripe_total(world, customer) == local_total(world, company_id) == 7
    ingest.track(customer, -7, at)  # cancelling the rest leaves 0 in Stripe too
    flush(world)
    assert stripe_total(world, customer) == local_total(world, company_id) == 0


def test_correction_older_than_35_days_is_skipped_and_recorded(world: World) -> None:
    catalog(world)
    customer = world.customer(name="A")
    ingest = Ingest(world)
    ingest.track(customer, 2, to_dt(world.now) - timedelta(hours=1))
    flush(world)
    ingest.track(customer, -1, to_dt(world.now) - timedelta(days=36))
    result = flush(world)
    assert result.sent == 0 and result.skipped == 1
    assert stripe_total(world, customer) == 2  # Stripe refuses such timestamps: logged, kept


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
