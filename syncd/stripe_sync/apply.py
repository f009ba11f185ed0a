"""Applying inbox events, off the request path.

Batches are applied set-based first (:mod:`.batch`: one transaction, each customer mapped
once). A batch that raises is rolled back and re-run here one event at a time, as follows.

An event is claimed with ``UPDATE ... SET attempts = attempts + 1 WHERE status = 'pending'``
(so two workers never apply it twice), applied, and marked ``applied`` or ``ignored`` in the
same transaction as its effects. A failure rolls the effects back and records ``last_error``;
the event stays pending for the next run until ``max_attempts``, then becomes ``failed``. A
poison event therefore never blocks the ones behind it.

Order independence comes from the mirror watermark (:mod:`.mirror`): a stale snapshot is
skipped, a same-second tie is resolved by re-fetching the object, and subscriptions and
schedules are re-fetched by default (Stripe's advice: treat a webhook as a hint).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeGuard

import stripe
import structlog
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, col, select

from ..models import InboxEvent, StripeSubscription, utcnow
from ..services.changes import checkpoint, restore
from ..stripe_api import is_own_request
from . import mirror
from .batch import apply_set, claim_next
from .catalog_cache import catalog_for
from .inbox import is_relevant
from .locks import lock_objects
from .mapping import MappingContext, apply_customer, expiring_customers, link_product, sync_company
from .normalize import (
    GRANTING,
    fingerprint,
    invoice_subscription_id,
    loads_stripe,
    object_kind,
    subscription_view,
)
from .rows import PendingWrites
from .schedules import map_schedule, sync_schedules

log = structlog.get_logger(__name__)

DEFAULT_REFETCH = frozenset({"subscription", "subscription_schedule"})
DELETABLE = frozenset({"product", "price", "customer"})
# Kinds whose mapping only reads the fields of ``fingerprint`` (invoices stay hints always).
SKIPPABLE = frozenset({"customer", "subscription", "product", "price"})
_TRANSIENT_RETRIES = 2
_RACE_SQLSTATES = frozenset({"40P01", "40001"})  # deadlock_detected, serialization_failure
_SQLITE_TURN = threading.Lock()


@dataclass(frozen=True, slots=True)
class ApplyOptions:
    refetch: frozenset[str] = DEFAULT_REFETCH
    past_due_grace_days: int = 0
    max_attempts: int = 5


@dataclass
class ApplyResult:
    applied: int = 0
    ignored: int = 0
    stale: int = 0
    failed: int = 0  # attempts that raised (retried later unless out of attempts)
    skipped: int = 0  # claimed by another worker
    errors: list[str] = field(default_factory=list)

    @property
    def processed(self) -> int:
        return self.applied + self.ignored + self.stale


def apply_pending(
    engine: Engine,
    client: stripe.StripeClient | None,
    *,
    options: ApplyOptions = ApplyOptions(),
    now: datetime | None = None,
    limit: int = 1000,
    batch: int = 100,
    expire: bool = True,
) -> ApplyResult:
    """Apply up to ``limit`` pending inbox events, oldest Stripe time first, then (``expire``)
    re-map customers whose access ran out.

    Each ``batch`` of events is applied set-based in one transaction (:mod:`.batch`). If that
    fails, the batch is re-run one event at a time to isolate the failure: on Postgres in one
    transaction, each event inside its own savepoint; on SQLite one transaction per event."""
    result = ApplyResult()
    ids: Sequence[str]
    if engine.dialect.name == "postgresql":
        ids = _apply_pending_pg(engine, client, options, now, limit, batch, result)
    else:
        with Session(engine) as session:
            ids = session.exec(
                select(InboxEvent.event_id)
                .where(col(InboxEvent.status) == "pending")
                .order_by(col(InboxEvent.stripe_created), col(InboxEvent.event_id))
                .limit(limit)
            ).all()
        for start in range(0, len(ids), batch):
            chunk = ids[start : start + batch]
            if not apply_set_batch(engine, client, chunk, options=options, now=now, result=result):
                for event_id in chunk:
                    apply_one(engine, client, event_id, options=options, now=now, result=result)
    if expire:
        expire_access(engine, options=options, now=now)
    if ids:
        log.info(
            "stripe_inbox_applied",
            applied=result.applied,
            ignored=result.ignored,
            stale=result.stale,
            failed=result.failed,
        )
    return result


def _apply_pending_pg(
    engine: Engine,
    client: stripe.StripeClient | None,
    options: ApplyOptions,
    now: datetime | None,
    limit: int,
    batch: int,
    result: ApplyResult,
) -> list[str]:
    """Postgres: each batch claims the next pending events itself (one statement, in its own
    transaction), so a pass starts without a separate read of the queue."""
    ids: list[str] = []
    while len(ids) < limit:
        claimed: list[str] = []
        count = min(batch, limit - len(ids))
        batched = apply_set_batch(
            engine, client, ids, options=options, now=now, result=result, claim=count, claimed=claimed
        )
        if not batched:  # rolled back, claim included: isolate the failure one event at a time
            apply_batch(engine, client, claimed, options=options, now=now, result=result)
        ids += claimed
        if len(claimed) < count:
            break
    return ids


def apply_set_batch(
    engine: Engine,
    client: stripe.StripeClient | None,
    event_ids: Sequence[str],
    *,
    options: ApplyOptions = ApplyOptions(),
    now: datetime | None = None,
    result: ApplyResult | None = None,
    claim: int = 0,
    claimed: list[str] | None = None,
) -> bool:
    """Apply a batch set-based (:mod:`.batch`): ``event_ids``, or with ``claim`` (Postgres)
    the next ``claim`` pending events other than ``event_ids``, whose ids are added to
    ``claimed`` (in Stripe time order). False when it rolled back and must be re-run event by
    event."""
    result = result if result is not None else ApplyResult()
    ctx = MappingContext(now=now or utcnow(), past_due_grace_days=options.past_due_grace_days)
    turn = _SQLITE_TURN if engine.dialect.name == "sqlite" else nullcontext()
    try:
        with turn, Session(engine, expire_on_commit=False) as session:
            events = claim_next(session, claim, skip=event_ids) if claim else None
            if events is not None:
                event_ids = [event_id for event_id, _ in events]
                if claimed is not None:
                    claimed += event_ids
                if not events:
                    return True
            ctx.catalog = catalog_for(session)
            outcomes = apply_set(session, client, event_ids, ctx, refetch=options.refetch, claimed=events)
            session.commit()
    except Exception as exc:
        log.info("stripe_batch_fallback", events=len(event_ids), error=f"{type(exc).__name__}: {exc}"[:500])
        return False
    for outcome in outcomes.values():
        setattr(result, outcome, getattr(result, outcome) + 1)
    return True


def apply_one(
    engine: Engine,
    client: stripe.StripeClient | None,
    event_id: str,
    *,
    options: ApplyOptions = ApplyOptions(),
    now: datetime | None = None,
    result: ApplyResult | None = None,
) -> str:
    """Claim and apply one pending event; returns applied|ignored|stale|failed|skipped."""
    result = result if result is not None else ApplyResult()
    ctx = MappingContext(now=now or utcnow(), past_due_grace_days=options.past_due_grace_days)
    # SQLite has one writer; a reader that loses the race to it fails on its stale snapshot,
    # so in-process appliers take turns there (Postgres uses per-customer locks instead).
    turn = _SQLITE_TURN if engine.dialect.name == "sqlite" else nullcontext()
    for attempt in range(_TRANSIENT_RETRIES + 1):
        try:
            with turn:
                outcome = _apply_claimed(engine, client, event_id, ctx, options)
        except DBAPIError as exc:
            # A race with a writer outside the inbox (the API creating the same company key,
            # a deadlock victim): the next attempt sees the winner's rows.
            if attempt < _TRANSIENT_RETRIES:
                continue
            failure: Exception = exc
        except Exception as exc:
            failure = exc
        else:
            setattr(result, outcome, getattr(result, outcome) + 1)
            return outcome
        break
    _record_failure(engine, event_id, failure, options.max_attempts)
    result.failed += 1
    result.errors.append(f"{event_id}: {type(failure).__name__}: {failure}")
    return "failed"


def _apply_claimed(
    engine: Engine,
    client: stripe.StripeClient | None,
    event_id: str,
    ctx: MappingContext,
    options: ApplyOptions,
) -> str:
    with Session(engine, expire_on_commit=False) as session:
        outcome = _claim_and_apply(session, client, event_id, ctx, options)
        if outcome == "skipped":
            session.rollback()
        else:
            session.commit()
    return outcome


def apply_batch(
    engine: Engine,
    client: stripe.StripeClient | None,
    event_ids: Sequence[str],
    *,
    options: ApplyOptions = ApplyOptions(),
    now: datetime | None = None,
    result: ApplyResult | None = None,
) -> ApplyResult:
    """Apply several events in one transaction, one savepoint each (Postgres)."""
    result = result if result is not None else ApplyResult()
    ctx = MappingContext(now=now or utcnow(), past_due_grace_days=options.past_due_grace_days)
    table: Any = InboxEvent.__table__  # type: ignore[attr-defined]
    outcomes: list[str] = []
    with Session(engine, expire_on_commit=False) as session:
        for event_id in event_ids:
            token = checkpoint(session)
            try:
                with session.begin_nested():
                    outcomes.append(_claim_and_apply(session, client, event_id, ctx, options))
            except Exception as exc:
                restore(session, token)
                if _lost_race(exc):
                    # A deadlock victim (another applier holds this customer's lock and waits
                    # for one this batch holds): not the event's fault, so no attempt is spent;
                    # it stays pending for the next run.
                    log.info("stripe_event_deferred", event_id=event_id, reason=type(exc.orig).__name__)
                    outcomes.append("skipped")
                    continue
                error = f"{type(exc).__name__}: {exc}"[:4000]
                log.warning("stripe_event_failed", event_id=event_id, error=error)
                session.exec(
                    update(table)
                    .where(table.c.event_id == event_id)
                    .values(attempts=table.c.attempts + 1, last_error=error)
                )
                session.exec(
                    update(table)
                    .where(table.c.event_id == event_id, table.c.attempts >= options.max_attempts)
                    .values(status="failed")
                )
                outcomes.append("failed")
                result.errors.append(f"{event_id}: {error}")
        session.commit()
    for outcome in outcomes:
        setattr(result, outcome, getattr(result, outcome) + 1)
    return result


def _lost_race(exc: Exception) -> TypeGuard[DBAPIError]:
    """Postgres aborted this statement to break a deadlock or a serialization conflict."""
    return isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlstate", None) in _RACE_SQLSTATES


def _claim_and_apply(
    session: Session,
    client: stripe.StripeClient | None,
    event_id: str,
    ctx: MappingContext,
    options: ApplyOptions,
) -> str:
    """Claim a pending event, apply it and mark it, inside the caller's transaction."""
    ctx.pending = PendingWrites()  # nothing queued by an earlier, rolled-back event carries over
    table: Any = InboxEvent.__table__  # type: ignore[attr-defined]
    claimed = session.exec(
        update(table)
        .where(table.c.event_id == event_id, table.c.status == "pending")
        .values(attempts=table.c.attempts + 1)
        .returning(table.c.payload)
    ).first()
    if claimed is None:
        return "skipped"
    outcome = apply_event(session, client, loads_stripe(claimed[0]), ctx, options)
    session.exec(
        update(table)
        .where(table.c.event_id == event_id)
        .values(status="ignored" if outcome == "ignored" else "applied", applied_at=utcnow(), last_error=None)
    )
    return outcome


def _record_failure(engine: Engine, event_id: str, exc: Exception, max_attempts: int) -> None:
    log.warning("stripe_event_failed", event_id=event_id, error=f"{type(exc).__name__}: {exc}")
    with Session(engine) as session:
        row = session.get(InboxEvent, event_id)
        if row is None:
            return
        row.attempts += 1  # the claim's increment was rolled back with the effects
        row.last_error = f"{type(exc).__name__}: {exc}"[:4000]
        if row.attempts >= max_attempts:
            row.status = "failed"
        session.add(row)
        session.commit()


def apply_event(
    session: Session,
    client: stripe.StripeClient | None,
    event: dict[str, Any],
    ctx: MappingContext,
    options: ApplyOptions = ApplyOptions(),
) -> str:
    """Apply one event inside the caller's transaction; returns applied|ignored|stale."""
    etype = str(event.get("type") or "")
    data = event.get("data") if isinstance(event.get("data"), dict) else {}
    obj = data.get("object") if isinstance(data, dict) else None
    if not is_relevant(etype) or not isinstance(obj, dict) or not obj.get("id"):
        return "ignored"
    kind = object_kind(obj)
    if kind not in mirror.MODELS:
        return "ignored"  # e.g. entitlement summaries and test clocks: nothing mirrored
    event_id, created = str(event["id"]), int(event.get("created") or 0)
    lock_objects(session, [(kind, obj)])  # the lock batches and sweep pages take for it
    row = mirror.get_row(session, kind, str(obj["id"]), lock=True)
    verdict = mirror.compare(row, created, event_id)
    if verdict in ("stale", "same"):
        return "stale"
    deleted = etype.endswith(".deleted") and kind in DELETABLE
    if client is not None and (kind in options.refetch or verdict == "tie"):
        fetched = mirror.fetch(client, kind, str(obj["id"]))
        if fetched is None or fetched.get("deleted"):
            deleted = True
            obj = {**(row.data if row is not None else obj), "deleted": True}
        else:
            obj, deleted = fetched, False
    elif kind == "subscription":
        obj = mirror.complete_items(client, obj)
    unchanged = row is not None and fingerprint(kind, row.data) == fingerprint(kind, obj)
    unchanged = unchanged and row.deleted == deleted
    row = mirror.store(session, kind, obj, created=created, source_id=event_id, row=row, deleted=deleted)
    if unchanged and kind in SKIPPABLE and (kind != "customer" or row.company_id):
        return "applied"  # nothing that mapping reads has changed (e.g. an invoice-only update)
    if is_own_request(event):
        # Echo of syncd's own write: the domain already holds this change.
        log.debug("stripe_event_echo", event_id=event_id, event_type=etype)
        return "applied"
    map_row(session, client, kind, row, ctx, options, created=created, source_id=event_id)
    return "applied"


def map_row(
    session: Session,
    client: stripe.StripeClient | None,
    kind: str,
    row: Any,
    ctx: MappingContext,
    options: ApplyOptions,
    *,
    created: int,
    source_id: str,
) -> None:
    """Carry a freshly mirrored object into the domain."""
    if kind == "customer":
        apply_customer(session, row)
    elif kind == "subscription" and row.customer_id:
        sync_company(session, row.customer_id, ctx)
        sync_schedules(session, row.customer_id, ctx)
    elif kind == "subscription_schedule":
        map_schedule(session, row, ctx)
    elif kind == "product" and link_product(session, row):
        ctx.catalog.plans.clear()
        for customer_id in customers_with_product(session, row.stripe_id):
            sync_company(session, customer_id, ctx)
    elif kind == "subscription_schedule":
        from ..billing.downgrades import schedule_ended  # billing builds on the sync: import late

        schedule_ended(session, row)
    elif kind == "invoice" and client is not None and "subscription" in options.refetch:
        # Payment outcomes move subscription status; some emitters (localstripe) send no
        # customer.subscription.updated for them, so the invoice is the only hint.
        sub_id = invoice_subscription_id(row.data)
        if sub_id:
            refresh_subscription(session, client, sub_id, ctx, created=created, source_id=f"{source_id}:sub")


def refresh_subscription(
    session: Session,
    client: stripe.StripeClient,
    sub_id: str,
    ctx: MappingContext,
    *,
    created: int,
    source_id: str,
) -> None:
    current = mirror.get_row(session, "subscription", sub_id, lock=True)
    fetched = mirror.fetch(client, "subscription", sub_id)
    if fetched is None:
        return
    row = mirror.store(session, "subscription", fetched, created=created, source_id=source_id, row=current)
    if row.customer_id:
        sync_company(session, row.customer_id, ctx)


def customers_with_product(session: Session, product_id: str) -> list[str]:
    """Customers whose granting subscriptions include a product (after it links to a plan)."""
    subs = session.exec(
        select(StripeSubscription).where(col(StripeSubscription.status).in_(sorted(GRANTING)))
    ).all()
    found = {
        s.customer_id
        for s in subs
        if s.customer_id and any(i.product_id == product_id for i in subscription_view(s.data).items)
    }
    return sorted(found)


def expire_access(
    engine: Engine,
    *,
    options: ApplyOptions = ApplyOptions(),
    now: datetime | None = None,
) -> int:
    """Re-map customers whose access ran out (period end after a cancel, past_due grace):
    Stripe sends nothing at that moment, but adapters must hear about it."""
    ctx = MappingContext(now=now or utcnow(), past_due_grace_days=options.past_due_grace_days)
    with Session(engine) as session:
        customers = expiring_customers(session, ctx.now)
    for customer_id in customers:
        with Session(engine) as session:
            sync_company(session, customer_id, ctx)
            session.commit()
    if customers:
        log.info("stripe_access_expired", customers=len(customers))
    return len(customers)
