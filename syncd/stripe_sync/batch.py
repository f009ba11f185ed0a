"""Set-based application of a batch of inbox events, in one transaction.

Per batch instead of per event: one ``SELECT ... FOR UPDATE SKIP LOCKED`` claims every event, one
statement takes every advisory lock, one ``SELECT ... IN`` per object kind loads (and locks)
the mirror rows the batch touches, the mirror writes go out in one flush, each customer is
mapped once however many of its events the batch holds, one ``UPDATE ... IN`` per outcome
marks the events, and the change log is written once at commit.

Ordering is the same as applying the events one by one: the batch is walked in Stripe time
order through the in-memory rows and their watermarks (``mirror.compare``), so an older event
for an object never overwrites a newer one, whether the newer one is in the batch or already
stored, and a duplicate is a no-op. Objects re-fetched from Stripe are fetched once per batch.

A batch is all or nothing. If anything raises (a poison event, a deadlock with another
applier), the transaction rolls back and :func:`~.apply.apply_pending` re-runs the batch the
old way, one savepoint per event, which isolates the failing event, counts its attempt and
dead-letters it after ``max_attempts``, exactly as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import stripe
import structlog
from sqlalchemy import all_, bindparam, select, update
from sqlmodel import Session

from ..db import TextArray, any_of, one_of, pipeline
from ..models import InboxEvent, StripeProduct, StripeSubscriptionSchedule, utcnow
from ..services.changes import write_change_log
from ..stripe_api import is_own_request
from . import mirror, mirror_bulk
from .companies_bulk import load_customers, name_companies
from .inbox import is_relevant
from .locks import lock_objects
from .mapping import MappingContext, link_product
from .normalize import JSON, fingerprint, invoice_subscription_id, loads_stripe, object_kind
from .preload import billed_companies, load_subscriptions, sync_companies
from .schedules import map_schedule, schedules_of

log = structlog.get_logger(__name__)

DELETABLE = frozenset({"product", "price", "customer"})
SKIPPABLE = frozenset({"customer", "subscription", "product", "price"})


@dataclass(frozen=True, slots=True)
class Incoming:
    event_id: str
    event_type: str
    kind: str
    obj: JSON
    created: int
    event: JSON


@dataclass
class Work:
    """What the batch's mirror writes leave to map into the domain (each object once)."""

    written: dict[tuple[str, str], mirror_bulk.State] = field(default_factory=dict)  # to upsert
    products: dict[str, None] = field(default_factory=dict)
    customers: dict[str, None] = field(default_factory=dict)
    synced: dict[str, None] = field(default_factory=dict)  # customers whose plans to recompute
    invoices: dict[str, Incoming] = field(default_factory=dict)  # subscription id -> invoice event
    schedules: dict[str, None] = field(default_factory=dict)
    scheduled: dict[str, None] = field(default_factory=dict)  # the schedules' customers


def parse(event: JSON) -> tuple[str, JSON] | None:
    """(kind, object) of an event that mirrors something, None for one to ignore."""
    data = event.get("data") if isinstance(event.get("data"), dict) else {}
    obj = data.get("object") if isinstance(data, dict) else None
    if not is_relevant(str(event.get("type") or "")) or not isinstance(obj, dict) or not obj.get("id"):
        return None
    kind = object_kind(obj)
    return (kind, obj) if kind in mirror.MODELS else None


def claim_next(session: Session, count: int, skip: Sequence[str] = ()) -> list[tuple[str, str]]:
    """Claim the oldest ``count`` pending events but ``skip`` (Postgres): (event id, payload)
    each, in Stripe time order.

    ``SELECT ... FOR UPDATE SKIP LOCKED``: the claim is the row lock, held to the batch's
    commit, and concurrent appliers (daemon replicas) get disjoint batches instead of a wait
    on each other's claims. The attempt is counted when the batch marks the events (the same
    transaction), so each event's row is rewritten once, not twice. ``skip``: the events a pass
    has had already (one that failed is still pending, and must not be retried by every later
    batch of the same pass)."""
    return [
        (event_id, payload)
        for event_id, payload in session.execute(_CLAIM, {"count": count, "skip": sorted(skip)})
    ]


_INBOX: Any = InboxEvent.__table__  # type: ignore[attr-defined]
_IDS = TextArray()
_CLAIM = (
    select(_INBOX.c.event_id, _INBOX.c.payload)
    .where(_INBOX.c.status == "pending", _INBOX.c.event_id != all_(bindparam("skip", type_=_IDS)))
    .order_by(_INBOX.c.stripe_created, _INBOX.c.event_id)
    .limit(bindparam("count"))
    .with_for_update(skip_locked=True)
)


def apply_set(
    session: Session,
    client: stripe.StripeClient | None,
    event_ids: Sequence[str],
    ctx: MappingContext,
    *,
    refetch: frozenset[str],
    claimed: Sequence[tuple[str, str]] | None = None,
) -> dict[str, str]:
    """Claim, mirror, map and mark a batch inside the caller's transaction (``claimed``: the
    events :func:`claim_next` already claimed in it).

    Returns each event id's outcome: applied | ignored | stale | skipped (claimed elsewhere)."""
    table: Any = InboxEvent.__table__  # type: ignore[attr-defined]
    if claimed is None:  # SQLite's single writer: an UPDATE takes it (the attempt is counted in _mark)
        claimed = session.execute(
            update(table)
            .where(one_of(session, table.c.event_id, event_ids), table.c.status == "pending")
            .values(attempts=table.c.attempts)
            .returning(table.c.event_id, table.c.payload)
        ).all()
    outcomes = dict.fromkeys(event_ids, "skipped")
    incoming: list[Incoming] = []
    for event_id, payload in claimed:
        event = loads_stripe(payload)
        parsed = parse(event)
        if parsed is None:
            outcomes[event_id] = "ignored"
            continue
        kind, obj = parsed
        created = int(event.get("created") or 0)
        incoming.append(Incoming(event_id, str(event.get("type")), kind, obj, created, event))
    incoming.sort(key=lambda i: (i.created, i.event_id))
    lock_objects(session, [(item.kind, item.obj) for item in incoming])  # then companies, in _map
    rows = _load_rows(session, incoming)
    fetched: dict[tuple[str, str], JSON | None] = {}
    work = Work()
    for item in incoming:
        outcomes[item.event_id] = _mirror_one(session, client, item, rows, fetched, work, refetch)
    _write_rows(session, work.written)
    _map(session, client, work, ctx, refetch)
    with pipeline(session):  # the mapping's writes, the outcomes and the change log: one trip
        ctx.pending.send(session)
        _mark(session, outcomes)
        write_change_log(session)
    return outcomes


def _load_rows(session: Session, incoming: Sequence[Incoming]) -> dict[tuple[str, str], mirror_bulk.State]:
    """Every mirror row the batch touches: one locking ``SELECT ... IN`` per kind."""
    by_kind: dict[str, set[str]] = {}
    for item in incoming:
        by_kind.setdefault(item.kind, set()).add(str(item.obj["id"]))
    rows: dict[tuple[str, str], mirror_bulk.State] = {}
    for kind, ids in by_kind.items():
        for stripe_id, state in mirror_bulk.load(session, kind, ids, lock=True).items():
            rows[(kind, stripe_id)] = state
    return rows


def _write_rows(session: Session, written: dict[tuple[str, str], mirror_bulk.State]) -> None:
    """The batch's new mirror states: one upsert per kind, all in one round trip."""
    by_kind: dict[str, list[mirror_bulk.State]] = {}
    for (kind, _), state in written.items():
        by_kind.setdefault(kind, []).append(state)
    with pipeline(session):
        for kind, states in by_kind.items():
            mirror_bulk.upsert(session, kind, states)


def _mirror_one(
    session: Session,
    client: stripe.StripeClient | None,
    item: Incoming,
    rows: dict[tuple[str, str], mirror_bulk.State],
    fetched: dict[tuple[str, str], JSON | None],
    work: Work,
    refetch: frozenset[str],
) -> str:
    """The mirror half of ``apply.apply_event`` for one event, against the batch's rows."""
    kind, obj = item.kind, item.obj
    key = (kind, str(obj["id"]))
    row = rows.get(key)
    verdict = mirror.compare(row, item.created, item.event_id)
    if verdict in ("stale", "same"):
        return "stale"
    deleted = item.event_type.endswith(".deleted") and kind in DELETABLE
    if client is not None and (kind in refetch or verdict == "tie"):
        if key not in fetched:  # the current object: the same for every event of the batch
            fetched[key] = mirror.fetch(client, kind, key[1])
        current = fetched[key]
        if current is None or current.get("deleted"):
            deleted = True
            obj = {**(row.data if row is not None else obj), "deleted": True}
        else:
            obj, deleted = current, False
    elif kind == "subscription":
        obj = mirror.complete_items(client, obj)
    unchanged = (
        row is not None and row.deleted == deleted and fingerprint(kind, row.data) == fingerprint(kind, obj)
    )
    state = mirror_bulk.new_state(
        kind, obj, created=item.created, source_id=item.event_id, previous=row, deleted=deleted
    )
    rows[key] = work.written[key] = state
    if unchanged and kind in SKIPPABLE and (kind != "customer" or state.company_id):
        return "applied"
    if is_own_request(item.event):
        log.debug("stripe_event_echo", event_id=item.event_id, event_type=item.event_type)
        return "applied"
    customer_id = state.columns.get("customer_id")
    if kind == "customer":
        work.customers[state.stripe_id] = None
    elif kind == "subscription" and customer_id:
        work.synced[customer_id] = None
    elif kind == "product":
        work.products[state.stripe_id] = None
    elif kind == "subscription_schedule":
        work.schedules[state.stripe_id] = None
        if customer_id:
            work.scheduled[customer_id] = None
    elif kind == "invoice" and client is not None and "subscription" in refetch:
        sub_id = invoice_subscription_id(state.data)
        if sub_id:
            work.invoices[sub_id] = item
    return "applied"


def _map(
    session: Session,
    client: stripe.StripeClient | None,
    work: Work,
    ctx: MappingContext,
    refetch: frozenset[str],
) -> None:
    """Map the batch into the domain: each product, customer and schedule once."""
    from .apply import customers_with_product, refresh_subscription

    relinked = False
    for product_id in work.products:
        product = session.get(StripeProduct, product_id)
        if product is not None and link_product(session, product):
            ctx.catalog.plans.clear()
            work.synced.update(dict.fromkeys(customers_with_product(session, product.stripe_id)))
            relinked = True
    synced = list(work.synced)
    # The schedules' customers are mapped too (map_schedule writes their companies' rows):
    # their companies are found, or created, and locked with the others, in one sorted lock.
    scheduled = [c for c in work.scheduled if c not in work.synced]
    customers = load_customers(session, [*work.customers, *synced, *scheduled])
    # A customer new to syncd whose subscriptions grant a base plan (its customer.created and
    # customer.subscription.created in one batch) gets a company straight on that plan: its
    # subscriptions are read now, under its customer lock. Not when invoices re-fetch
    # subscriptions below (the plans are known only after that), nor when a product's link
    # brought in customers whose locks the batch does not hold (their subscriptions must be
    # read after their companies' locks are taken).
    written = [state for (kind, _), state in work.written.items() if kind == "subscription"]
    refreshing = bool(work.invoices) and client is not None
    subscriptions = None if refreshing or relinked else load_subscriptions(session, synced, written)
    companies = billed_companies(
        session, ctx, [*work.customers, *synced, *scheduled], customers, subscriptions
    )
    name_companies(session, list(work.customers), companies, customers)
    if client is not None:
        for sub_id, item in work.invoices.items():
            refresh_subscription(
                session, client, sub_id, ctx, created=item.created, source_id=f"{item.event_id}:sub"
            )
    sync_companies(session, ctx, synced, companies, write=False, subscriptions=subscriptions)
    # Schedules are re-judged after their customer's plans moved (one query for the batch).
    schedules = {s.stripe_id: s for s in schedules_of(session, list(work.synced))}
    for schedule_id in work.schedules:
        row = session.get(StripeSubscriptionSchedule, schedule_id)
        if row is not None:
            schedules[schedule_id] = row
    if schedules:
        ctx.pending.write(session)  # mapping a schedule reads the plans just moved
    for schedule in schedules.values():
        map_schedule(session, schedule, ctx)


def _mark(session: Session, outcomes: dict[str, str]) -> None:
    now = utcnow()
    statement = _mark_statement(session.get_bind().dialect.name)
    for status, wanted in (("applied", ("applied", "stale")), ("ignored", ("ignored",))):
        ids = sorted(event_id for event_id, outcome in outcomes.items() if outcome in wanted)
        if ids:
            session.execute(statement, {"ids": ids, "status": status, "now": now})


@cache
def _mark_statement(dialect: str) -> Any:
    return (
        update(_INBOX)
        .where(any_of(dialect, _INBOX.c.event_id, "ids"))
        .values(
            status=bindparam("status"),
            applied_at=bindparam("now"),
            last_error=None,
            attempts=_INBOX.c.attempts + 1,
        )
    )
