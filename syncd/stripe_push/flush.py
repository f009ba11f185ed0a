"""Usage to Stripe: the ``usage_event`` table is the durable outbox, flushed as meter events.

Two steps, each safe to interrupt:

1. **Stage** (one transaction): unflushed events of metered features, for companies with a
   Stripe customer, are grouped per (company, event, UTC hour) into a ``stripe_meter_batch``
   row holding the net value, and each event is linked to its batch. The batch identifier is
   a hash of its content (company, event, window, event count, first/last id, value), so it
   is deterministic and a corrected group gets a new one.
2. **Send**: pending batches become meter events with ``identifier`` = the batch identifier and
   an idempotency key derived from it. A retry after a crash or an outage therefore either
   replays (same key) or is refused as a duplicate identifier (Stripe dedupes for >= 24 h),
   which counts as sent: usage is never counted twice. Retries with backoff are the client's
   (``syncd.stripe_api``: the SDK retries 5xx/network errors under the same key, the paced
   client waits out 429s); an error left after those stops the run and the rest stays pending
   for the next run.

Stripe accepts timestamps only within the past 35 days: older usage is marked ``skipped`` with
a note and a warning log, never dropped silently.

**Corrections** are negative-quantity track events (secret key; ``trusted_client_clock`` with
``sent_at`` dates one in the hour of the usage it corrects). They go through the same two steps
as any usage: staged into their (company, event, hour) batch, netted with that hour's unflushed
events, and sent as one meter event, whose value is negative when the correction outweighs
them (Stripe: incorrectly recorded usage "can also be fixed by recording negative quantities").
Stripe's sums, per hour and per period, therefore equal the local ones after a correction.
Meter event adjustments (cancel the window's sent event, re-send the corrected net) are not
used, because:

* Stripe cancels an event only within 24 hours of receiving it, and corrections often come
  later: that path would need this one as a fallback anyway, while negative events work for
  the whole 35-day window;
* cancel + re-send is two requests with a gap between them in which Stripe has neither the
  old nor the new value: an outage or a period's invoice finalized in that gap under-bills the
  whole window, and the adjustment itself is processed asynchronously. A negative event is
  append-only, so the outbox's exactly-once argument (deterministic identifier, replay or
  duplicate) holds for it unchanged;
* for sum meters the result is the same number.

Stripe's own limits apply either way: a correction dated in a period whose invoice is
finalized does not change that invoice, a period whose net is negative is invoiced as 0, and
a correction older than 35 days is ``skipped`` like any usage.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import stripe
import structlog
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from ..models import CompanyKey, StripeMeterBatch, UsageEvent, utcnow
from ..stripe_api import idempotency_key
from .meters import CUSTOMER_PAYLOAD_KEY, VALUE_PAYLOAD_KEY, ensure_meters, metered_events

log = structlog.get_logger(__name__)

STRIPE_MAX_PAST = timedelta(days=35)
#: Margin so a batch staged near the limit is still inside it when sent.
_PAST_MARGIN = timedelta(hours=1)
_STAGE_LIMIT = 20_000
_SEND_LIMIT = 1_000
CUSTOMER_KEY = "stripe_customer_id"
_TRANSIENT = (stripe.APIConnectionError, stripe.RateLimitError, stripe.APIError)


@dataclass
class FlushResult:
    staged: int = 0
    sent: int = 0
    duplicates: int = 0
    skipped: int = 0
    pending: int = 0
    corrections: int = 0  # of the sent: negative net values (corrections outweighing usage)
    meters_created: list[str] = field(default_factory=list)
    error: str | None = None


def _hour(at: datetime) -> datetime:
    at = at.astimezone(UTC) if at.tzinfo else at.replace(tzinfo=UTC)
    return at.replace(minute=0, second=0, microsecond=0)


def batch_identifier(company_id: str, event_name: str, window: datetime, ids: list[int], value: int) -> str:
    raw = f"{company_id}:{event_name}:{int(window.timestamp())}:{len(ids)}:{ids[0]}:{ids[-1]}:{value}"
    return "syncd-u-" + hashlib.sha256(raw.encode()).hexdigest()[:40]


def stage(session: Session, now: datetime, events: Iterable[str]) -> tuple[int, int]:
    """Group unflushed usage into batches; returns (batches staged, of which skipped)."""
    names = list(events)
    if not names:
        return 0, 0
    query = (
        select(UsageEvent, CompanyKey.value)
        .join(
            CompanyKey,
            (col(CompanyKey.company_id) == UsageEvent.company_id) & (col(CompanyKey.key) == CUSTOMER_KEY),
        )
        .where(
            col(UsageEvent.flushed_to_stripe_at).is_(None),
            col(UsageEvent.event_subtype).in_(names),
            col(UsageEvent.occurred_at) <= now,
        )
        .order_by(col(UsageEvent.id))
        .limit(_STAGE_LIMIT)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(of=UsageEvent, skip_locked=True)
    groups: dict[tuple[str, str, datetime], tuple[str, list[UsageEvent]]] = {}
    for event, customer in session.exec(query).all():
        key = (event.company_id, event.event_subtype, _hour(event.occurred_at))
        groups.setdefault(key, (str(customer), []))[1].append(event)
    skipped, too_old = 0, 0
    for (company_id, event_name, window), (customer, rows) in groups.items():
        ids = sorted(int(r.id or 0) for r in rows)
        value = sum(r.quantity for r in rows)
        identifier = batch_identifier(company_id, event_name, window, ids, value)
        timestamp = int(max(_aware(r.occurred_at) for r in rows).timestamp())
        batch = StripeMeterBatch(
            identifier=identifier,
            company_id=company_id,
            event_name=event_name,
            customer_id=customer,
            window_start=window,
            timestamp=timestamp,
            value=value,
            events=len(rows),
        )
        if window + timedelta(hours=1) < now - STRIPE_MAX_PAST + _PAST_MARGIN:
            batch.status, batch.note = "skipped", "older than Stripe's 35-day meter event window"
            too_old += value
        elif value == 0:
            batch.status, batch.note = "skipped", "net zero"
        if batch.status == "skipped":
            skipped += 1
        session.add(batch)
        session.flush()
        session.execute(
            update(UsageEvent)
            .where(col(UsageEvent.id).in_(ids))
            .values(flushed_to_stripe_at=now, stripe_batch_id=identifier)
        )
    if too_old:
        # Kept as skipped batches (queryable), never sent: Stripe would refuse the timestamps.
        log.warning("usage_flush_skipped_too_old", value=too_old, before=(now - STRIPE_MAX_PAST).isoformat())
    return len(groups), skipped


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _send_one(client: stripe.StripeClient, batch: StripeMeterBatch) -> str:
    """'sent' or 'duplicate' (already in Stripe: an earlier attempt got through)."""
    try:
        client.v1.billing.meter_events.create(
            {
                "event_name": batch.event_name,
                "identifier": batch.identifier,
                "timestamp": batch.timestamp,
                "payload": {CUSTOMER_PAYLOAD_KEY: batch.customer_id, VALUE_PAYLOAD_KEY: str(batch.value)},
            },
            {"idempotency_key": idempotency_key("meter-event", batch.identifier)},
        )
    except stripe.InvalidRequestError as exc:
        if exc.code == "resource_already_exists":
            return "duplicate"
        raise
    return "sent"


def send_pending(engine: Engine, client: stripe.StripeClient, now: datetime, result: FlushResult) -> None:
    with Session(engine) as session:
        pending = session.exec(
            select(StripeMeterBatch)
            .where(col(StripeMeterBatch.status) == "pending")
            .order_by(col(StripeMeterBatch.created_at), col(StripeMeterBatch.identifier))
            .limit(_SEND_LIMIT)
        ).all()
        for batch in pending:
            if batch.timestamp < int((now - STRIPE_MAX_PAST).timestamp()) + 60:
                batch.status, batch.note = "skipped", "left Stripe's 35-day window while pending"
                log.warning("usage_flush_skipped_too_old", identifier=batch.identifier, value=batch.value)
                result.skipped += 1
                session.add(batch)
                session.commit()
                continue
            batch.attempts += 1
            try:
                outcome = _send_one(client, batch)
            except _TRANSIENT as exc:
                session.add(batch)
                session.commit()
                result.error = f"{type(exc).__name__}: {exc.user_message or exc}"
                log.warning("usage_flush_interrupted", error=result.error, identifier=batch.identifier)
                break
            except stripe.InvalidRequestError as exc:
                batch.status, batch.note = "skipped", f"refused by Stripe: {exc.user_message or exc}"[:255]
                log.error("usage_flush_refused", identifier=batch.identifier, error=str(exc))
                result.skipped += 1
            else:
                batch.status, batch.sent_at = "sent", utcnow()
                result.sent += outcome == "sent"
                result.duplicates += outcome == "duplicate"
                result.corrections += outcome == "sent" and batch.value < 0
            session.add(batch)
            session.commit()
        result.pending = len(
            session.exec(
                select(StripeMeterBatch.identifier).where(col(StripeMeterBatch.status) == "pending")
            ).all()
        )


def flush_usage(engine: Engine, client: stripe.StripeClient, *, now: datetime | None = None) -> FlushResult:
    """Ensure meters, stage new usage, send pending batches. ``now``: Stripe's clock."""
    now = now or utcnow()
    result = FlushResult()
    with Session(engine) as session:
        events = metered_events(session)
    if not events:
        return result
    try:
        result.meters_created = ensure_meters(client, events)
    except _TRANSIENT as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        log.warning("usage_flush_interrupted", error=result.error)
        return result
    with Session(engine) as session:
        result.staged, result.skipped = stage(session, now, events)
        session.commit()
    send_pending(engine, client, now, result)
    log.info(
        "usage_flushed",
        staged=result.staged,
        sent=result.sent,
        duplicates=result.duplicates,
        skipped=result.skipped,
        pending=result.pending,
        corrections=result.corrections,
    )
    return result
