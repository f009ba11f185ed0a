"""Usage metering: track events into per-period counters, exactly once per idempotency key.

Each accepted event is kept (``usage_event``, so counts can be rebuilt and flushed to Stripe)
and added to every counter it belongs to: ``(event, period, month reset, period start)`` for
all_time, the UTC day, the Sunday-based week, the calendar month and the billing-cycle month.
Counters are keyed by their period's start, so a period that has rolled over is a new row
that starts from zero; nothing has to be reset. A batch is written with one multi-row insert
per table and one upsert per distinct counter.

Idempotency keys are remembered for 24 hours per event type; a duplicate is dropped.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import Table, delete, insert, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col

from ..engine.periods import event_buckets
from ..engine.wire import Subscription
from ..models import CompanyMetric, EventIdempotency, UsageEvent
from ..pgarray import plain_array, text_array, ts_array
from .changes import usage_changed

IDEMPOTENCY_TTL = dt.timedelta(hours=24)
_USAGE_EVENTS: Table = UsageEvent.__table__  # type: ignore[attr-defined]
_COUNTERS: Table = CompanyMetric.__table__  # type: ignore[attr-defined]
ALL_TIME_START = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_Bucket = tuple[str, str, str, dt.datetime]  # (event, period, month reset, period start)


@dataclass(frozen=True, slots=True)
class TrackInput:
    company_id: str
    event_subtype: str
    quantity: int
    occurred_at: dt.datetime
    idempotency_key: str | None = None
    user_id: str | None = None
    backfill: bool = False


@dataclass(frozen=True, slots=True)
class TrackOutcome:
    accepted: int
    duplicates: int
    events: tuple[TrackInput, ...] = ()  # the accepted ones


def _insert(session: Session) -> type[postgresql.Insert] | type[sqlite.Insert]:
    return postgresql.Insert if session.get_bind().dialect.name == "postgresql" else sqlite.Insert


def _claim_keys(session: Session, keys: Sequence[str], now: dt.datetime) -> set[str]:
    """Insert the idempotency keys not seen in the last 24 h; returns the ones newly claimed."""
    if not keys:
        return set()
    session.execute(
        delete(EventIdempotency).where(
            col(EventIdempotency.key).in_(keys), col(EventIdempotency.expires_at) <= now
        )
    )
    ins = _insert(session)
    stmt = (
        ins(EventIdempotency)
        .values([{"key": k, "expires_at": now + IDEMPOTENCY_TTL} for k in keys])
        .on_conflict_do_nothing(index_elements=["key"])
        .returning(col(EventIdempotency.key))
    )
    return set(session.execute(stmt).scalars().all())


def track_events(
    session: Session,
    events: Sequence[TrackInput],
    subscriptions: Mapping[str, Subscription | None],
    now: dt.datetime,
) -> TrackOutcome:
    """Record track events; ``subscriptions`` gives each company's billing period (for
    billing-cycle counters)."""
    return track_batches(session, [events], subscriptions, now)[0]


def track_batches(
    session: Session,
    batches: Sequence[Sequence[TrackInput]],
    subscriptions: Mapping[str, Subscription | None],
    now: dt.datetime,
) -> list[TrackOutcome]:
    """Record several batches of track events in one set of statements (group commit).

    Idempotency keys are claimed in batch order: the first event with a key is accepted, any
    later one (in the same batch or a later one, or within the last 24 h) is a duplicate.
    One insert of usage events, one upsert of counters aggregated in memory (so a hot counter
    is written once per transaction, not once per event), one claim of idempotency keys.
    """
    keyed = {f"track:{e.idempotency_key}" for batch in batches for e in batch if e.idempotency_key}
    claimed = _claim_keys(session, sorted(keyed), now)
    outcomes: list[TrackOutcome] = []
    accepted_all: list[TrackInput] = []
    seen: set[str] = set()
    for batch in batches:
        accepted: list[TrackInput] = []
        for e in batch:
            if e.idempotency_key:
                key = f"track:{e.idempotency_key}"
                if key not in claimed or key in seen:  # a repeat inside the group is a duplicate too
                    continue
                seen.add(key)
            accepted.append(e)
        outcomes.append(TrackOutcome(len(accepted), len(batch) - len(accepted), tuple(accepted)))
        accepted_all.extend(accepted)
    if accepted_all:
        _write_usage(session, accepted_all, subscriptions, now)
    return outcomes


# Postgres: one statement per table whatever the group's size, rows passed as arrays (the
# SQL text never changes, so it is prepared once; executemany would run it once per row).
_PG_USAGE_INSERT = text(
    "INSERT INTO usage_event (company_id, user_id, event_subtype, quantity, occurred_at, received_at,"
    " idempotency_key, backfill) SELECT c, u, e, q, o, :received_at, k, b FROM unnest("
    "CAST(:c AS varchar[]), CAST(:u AS varchar[]), CAST(:e AS varchar[]), CAST(:q AS bigint[]),"
    " CAST(:o AS timestamptz[]), CAST(:k AS varchar[]), CAST(:b AS boolean[])) AS t(c, u, e, q, o, k, b)"
)
_PG_COUNTER_UPSERT = text(
    "INSERT INTO company_metric (company_id, event_subtype, period, month_reset, period_start, value,"
    " updated_at) SELECT c, e, p, m, s, v, :now FROM unnest(CAST(:c AS varchar[]),"
    " CAST(:e AS varchar[]), CAST(:p AS varchar[]), CAST(:m AS varchar[]), CAST(:s AS timestamptz[]),"
    " CAST(:v AS bigint[])) AS t(c, e, p, m, s, v)"
    " ON CONFLICT (company_id, event_subtype, period, month_reset, period_start)"
    " DO UPDATE SET value = company_metric.value + excluded.value, updated_at = excluded.updated_at"
)


def _write_usage_pg(
    session: Session,
    accepted: Sequence[TrackInput],
    totals: Mapping[tuple[str, str, str, str, dt.datetime], int],
    now: dt.datetime,
) -> None:
    session.execute(
        _PG_USAGE_INSERT,
        {
            "received_at": now,
            "c": text_array(e.company_id for e in accepted),
            "u": text_array(e.user_id for e in accepted),
            "e": text_array(e.event_subtype for e in accepted),
            "q": plain_array(e.quantity for e in accepted),
            "o": ts_array(e.occurred_at for e in accepted),
            "k": text_array(e.idempotency_key for e in accepted),
            "b": "{" + ",".join("t" if e.backfill else "f" for e in accepted) + "}",
        },
    )
    keys = sorted(totals)  # concurrent transactions lock shared counter rows in one order
    session.execute(
        _PG_COUNTER_UPSERT,
        {
            "now": now,
            "c": text_array(k[0] for k in keys),
            "e": text_array(k[1] for k in keys),
            "p": text_array(k[2] for k in keys),
            "m": text_array(k[3] for k in keys),
            "s": ts_array(k[4] for k in keys),
            "v": plain_array(totals[k] for k in keys),
        },
    )


def _write_usage(
    session: Session,
    accepted: Sequence[TrackInput],
    subscriptions: Mapping[str, Subscription | None],
    now: dt.datetime,
) -> None:
    # Counters aggregated in memory: one row per (company, event, period, period start).
    totals: dict[tuple[str, str, str, str, dt.datetime], int] = defaultdict(int)
    # Events of one request share their time: compute each distinct set of buckets once.
    buckets: dict[tuple[str, dt.datetime, tuple[str, dt.datetime, dt.datetime] | None], list[_Bucket]] = {}
    for e in accepted:
        sub = subscriptions.get(e.company_id)
        memo = (e.event_subtype, e.occurred_at, (sub.id, sub.period_start, sub.period_end) if sub else None)
        found = buckets.get(memo)
        if found is None:
            found = buckets[memo] = [
                (b.event_subtype, b.period, b.month_reset, b.start or ALL_TIME_START)
                for b in event_buckets(e.event_subtype, e.occurred_at, sub)
            ]
        for ev, period, reset, start in found:
            totals[(e.company_id, ev, period, reset, start)] += e.quantity
    if session.get_bind().dialect.name == "postgresql":
        _write_usage_pg(session, accepted, totals, now)
        usage_changed(session, {e.company_id for e in accepted})
        return
    # Core inserts with a list of rows (executemany, sent as multi-row VALUES pages): the ORM
    # bulk path and an inline .values(rows) statement recompile per batch, ~2 ms per event.
    session.execute(
        insert(_USAGE_EVENTS),
        [
            {
                "company_id": e.company_id,
                "user_id": e.user_id,
                "event_subtype": e.event_subtype,
                "quantity": e.quantity,
                "occurred_at": e.occurred_at,
                "received_at": now,
                "idempotency_key": e.idempotency_key,
                "backfill": e.backfill,
            }
            for e in accepted
        ],
    )
    ins = _insert(session)
    # Sorted: concurrent transactions lock shared counter rows in one order (no deadlocks).
    rows = [
        {
            "company_id": cid,
            "event_subtype": ev,
            "period": period,
            "month_reset": reset,
            "period_start": start,
            "value": value,
            "updated_at": now,
        }
        for (cid, ev, period, reset, start), value in sorted(totals.items())
    ]
    stmt = ins(_COUNTERS)
    stmt = stmt.on_conflict_do_update(
        index_elements=["company_id", "event_subtype", "period", "month_reset", "period_start"],
        set_={"value": _COUNTERS.c.value + stmt.excluded.value, "updated_at": stmt.excluded.updated_at},
    )
    session.execute(stmt, rows)
    usage_changed(session, {e.company_id for e in accepted})
