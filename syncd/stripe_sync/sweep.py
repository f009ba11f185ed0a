"""The resumable full sweep: every product, price, customer, subscription (``status=all``) and
schedule, listed from Stripe and applied page by page.

Each page (``PAGE_SIZE`` listed objects) is one transaction: mirror rows plus their domain
mapping plus the sweep cursor for that object type (``sweep:<kind>`` = last id done). An
interrupted sweep therefore resumes after the last committed page, and memory stays flat
whatever the account size. Kinds run in dependency order (products link plans before
subscriptions are mapped).

Watermark: a listed object is at least as new as every event created before the listing
started, so rows are stored with the newest event time seen at the start (``T0``); a row
holding a newer event's snapshot is left alone.

Companies: the customers pass only mirrors customers that have no company yet. The
subscriptions pass creates the companies of customers with subscriptions, straight on their
billing plan (not on the initial plan and then moved: a third fewer rows in a backfill), and a
closing pass (:func:`link_customers`) gives the customers still without one theirs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from functools import partial

import stripe
import structlog
from sqlalchemy import bindparam, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from ..config import SWEEP_PAGE_SIZE, automatic_page_size
from ..models import StripeProduct, StripeSubscriptionSchedule, utcnow
from . import mirror, mirror_bulk
from .companies_bulk import CUSTOMERS, load_customers, name_companies
from .locks import lock_objects
from .mapping import MappingContext, link_product
from .normalize import JSON, fingerprint
from .planner_stats import PlannerStats
from .preload import billed_companies, load_subscriptions, sync_companies
from .replay import read_cursor, write_cursor
from .schedules import map_schedule
from .sweep_pool import PagePool, SweepResult

log = structlog.get_logger(__name__)

KINDS: tuple[str, ...] = ("product", "price", "customer", "subscription", "subscription_schedule")
# Kinds whose pages may run at once: the bulk of an account, mapped under customer and company
# locks. Products link plans and schedules move plans with reads that no lock covers; both
# are few, and go one page at a time.
PARALLEL: frozenset[str] = frozenset({"customer", "subscription"})
# Objects per transaction (``[stripe] sweep_page_size``): Stripe lists 100 at a time; a
# transaction of several listed pages shares its statements, locks and commit among more
# objects (measured in a 20,000-object backfill: 1,000 a page ~8% faster than 500, 250 ~25%
# slower), while its locks (two per object at most, one in a backfill) stay inside
# Postgres's table (``config.SWEEP_OBJECTS_IN_FLIGHT``).
PAGE_SIZE = SWEEP_PAGE_SIZE
DONE = "done"
Progress = Callable[[str, int], None]


def cursor_name(kind: str) -> str:
    return f"sweep:{kind}"


def stripe_now(client: stripe.StripeClient) -> int:
    """The newest event time Stripe reports (a lower bound on Stripe's clock), 0 if none."""
    page = mirror.get_json(client, "/v1/events", {"limit": 100})
    return max((int(e.get("created") or 0) for e in page.get("data") or ()), default=0)


def list_objects(client: stripe.StripeClient, kind: str, after: str | None) -> Iterator[JSON]:
    """Objects of a kind; servers without /v1/prices (localstripe) list legacy plans instead."""
    try:
        yield from mirror.iter_all(client, kind, starting_after=after)
    except stripe.StripeError as exc:  # 404 bodies of fakes are not always JSON errors
        if exc.http_status != 404:
            raise
        if kind == "price":
            yield from mirror.iter_all(client, "plan", starting_after=after)
        else:
            log.warning("stripe_sweep_unsupported", kind=kind, status=exc.http_status)


def _pages(objects: Iterator[JSON], size: int) -> Iterator[list[JSON]]:
    page: list[JSON] = []
    for obj in objects:
        page.append(obj)
        if len(page) >= size:
            yield page
            page = []
    if page:
        yield page


def apply_page(
    session: Session,
    client: stripe.StripeClient | None,
    kind: str,
    objects: Sequence[JSON],
    ctx: MappingContext,
    *,
    created: int,
    result: SweepResult,
    link: bool = True,
) -> None:
    """Mirror one page of listed objects and map them into the domain (caller commits).
    ``link=False``: customers without a company are only mirrored, for the subscriptions
    pass and then :func:`link_customers` to give them theirs."""
    lock_objects(session, [(kind, obj) for obj in objects])  # as the applier: one writer a customer
    previous = mirror_bulk.load(session, kind, [str(o["id"]) for o in objects])
    source_id = f"sweep:{created}"
    states: list[mirror_bulk.State] = []
    touched: list[str] = []  # stored exactly as listed: only the watermark moves
    remap: list[str] = []  # products, customers and schedules to map
    customers: dict[str, None] = {}  # of subscriptions to map
    scheduled: dict[str, None] = {}  # of schedules to map: their companies are locked too
    for obj in objects:
        before = previous.get(str(obj["id"]))
        if mirror.compare(before, created, source_id) == "stale":
            result.skipped_newer += 1
            continue
        if kind == "subscription":
            obj = mirror.complete_items(client, obj)
        linked = kind != "customer" or (before is not None and before.company_id)
        if before is not None and linked and mirror_bulk.stored_as_listed(kind, before, obj, created):
            touched.append(before.stripe_id)
            result.stored += 1
            result.unchanged += 1  # already mapped from this very state: nothing to redo
            continue
        state = mirror_bulk.new_state(kind, obj, created=created, source_id=source_id, previous=before)
        states.append(state)
        result.stored += 1
        unchanged = (
            before is not None
            and not before.deleted
            and fingerprint(kind, before.data) == fingerprint(kind, obj)
        )
        if unchanged and (kind != "customer" or (before is not None and before.company_id)):
            result.unchanged += 1  # already mapped from this state: a nightly re-sweep is cheap
        elif kind == "subscription":
            customer_id = state.columns.get("customer_id")
            if customer_id:
                customers[customer_id] = None
        elif kind in ("product", "subscription_schedule") or (
            kind == "customer" and (link or (before is not None and before.company_id))
        ):
            remap.append(state.stripe_id)
            customer_id = state.columns.get("customer_id")
            if kind == "subscription_schedule" and customer_id:
                scheduled[customer_id] = None
    mirror_bulk.upsert(session, kind, states)
    mirror_bulk.touch(session, kind, touched, created=created, source_id=source_id)
    if kind == "product":
        for product_id in remap:
            product = session.get(StripeProduct, product_id)
            if product is not None and link_product(session, product):
                ctx.catalog.plans.clear()
    wanted = [*(remap if kind == "customer" else ()), *customers, *scheduled]
    known = load_customers(session, wanted)
    subscriptions = load_subscriptions(session, list(customers), states)
    companies = billed_companies(session, ctx, wanted, known, subscriptions)
    if kind == "customer":
        name_companies(session, remap, companies, known)
    else:  # customers linked by this page to the company their key names: named as their own page would
        keyed = [c for c in customers if c in companies and c not in known.linked]
        name_companies(session, [c for c in keyed if companies[c] not in known.created], companies, known)
    sync_companies(session, ctx, list(customers), companies, subscriptions=subscriptions)
    if kind == "subscription_schedule":
        for schedule_id in remap:
            schedule = session.get(StripeSubscriptionSchedule, schedule_id)
            if schedule is not None:
                map_schedule(session, schedule, ctx)


def sweep(
    engine: Engine,
    client: stripe.StripeClient,
    *,
    kinds: Sequence[str] = KINDS,
    resume: bool = True,
    page_size: int | None = None,
    workers: int = 2,
    past_due_grace_days: int = 0,
    now: datetime | None = None,
    on_progress: Progress | None = None,
) -> SweepResult:
    """List and apply every object of ``kinds``; resumes an interrupted sweep by default.
    Pages of a kind are applied on ``workers`` threads (Postgres) while the next are listed;
    ``page_size`` None: the automatic size for that many workers."""
    page_size = page_size or automatic_page_size(workers)
    result = SweepResult()
    created = stripe_now(client)
    moment = now or utcnow()
    stats = PlannerStats(engine)
    try:
        for kind in kinds:
            after, _ = read_cursor(engine, cursor_name(kind)) if resume else (None, None)
            if after == DONE:
                result.objects[kind] = 0
                continue
            if after:
                result.resumed.append(kind)
            pool = page_pool(
                engine,
                client,
                kind,
                created=created,
                result=result,
                now=moment,
                past_due_grace_days=past_due_grace_days,
                workers=workers if kind in PARALLEL else 1,
                stats=stats,
                on_progress=on_progress,
                link=False,  # link_customers, below, after the subscriptions
            )
            with pool:
                for page in _pages(list_objects(client, kind, after), page_size):
                    pool.submit(page)
            with Session(engine) as session:
                write_cursor(session, cursor_name(kind), DONE)
                session.commit()
            result.objects[kind] = pool.count
        if "customer" in kinds:
            link_customers(
                engine,
                result=result,
                now=moment,
                past_due_grace_days=past_due_grace_days,
                page_size=page_size,
                workers=workers,
                stats=stats,
                on_progress=on_progress,
            )
        # Finished: the next sweep starts from the top again.
        with Session(engine) as session:
            for kind in kinds:
                write_cursor(session, cursor_name(kind), "")
            session.commit()
    finally:
        # The applier's plans, from now on, for the account's real size, with the configured
        # statistics target (the sweep's own refreshes sampled small), also when it failed.
        stats.refresh()
    log.info("stripe_sweep_done", objects=result.objects, stored=result.stored, resumed=result.resumed)
    return result


def page_pool(
    engine: Engine,
    client: stripe.StripeClient | None,
    kind: str,
    *,
    created: int,
    result: SweepResult,
    now: datetime,
    past_due_grace_days: int = 0,
    workers: int = 2,
    stats: PlannerStats | None = None,
    on_progress: Progress | None = None,
    link: bool = True,
) -> PagePool:
    """The pool applying one kind's listed pages (with :func:`apply_page`, cursor included)."""

    def apply(session: Session, ctx: MappingContext, page: Sequence[JSON]) -> SweepResult:
        tally = SweepResult()
        apply_page(session, client, kind, page, ctx, created=created, result=tally, link=link)
        return tally

    return PagePool(
        engine,
        kind,
        cursor_name(kind),
        apply,
        partial(MappingContext, now=now, past_due_grace_days=past_due_grace_days),
        result=result,
        workers=workers,
        stats=stats,
        on_progress=on_progress,
    )


_UNLINKED = (
    select(CUSTOMERS.c.stripe_id)
    .where(
        CUSTOMERS.c.company_id.is_(None),
        CUSTOMERS.c.deleted.is_(False),
        CUSTOMERS.c.stripe_id > bindparam("after"),
    )
    .order_by(CUSTOMERS.c.stripe_id)
    .limit(bindparam("limit"))
)


def unlinked_customers(engine: Engine, page_size: int = PAGE_SIZE) -> Iterator[list[JSON]]:
    """Pages of mirrored customers without a company, read a page at a time (no transaction
    held while they are linked)."""
    after = ""
    while True:
        with engine.connect() as conn:
            ids = list(conn.execute(_UNLINKED, {"after": after, "limit": page_size}).scalars())
        if not ids:
            return
        yield [{"id": customer_id, "object": "customer"} for customer_id in ids]
        after = ids[-1]


def link_page(session: Session, ctx: MappingContext, customer_ids: Sequence[str]) -> int:
    """Give each customer (mirrored, live) its company: found by key, or created and mapped
    from any subscriptions it has. Returns how many were still unlinked under their locks."""
    lock_objects(session, [("customer", {"id": customer_id}) for customer_id in customer_ids])
    known = load_customers(session, customer_ids)
    todo = [
        cid
        for cid in customer_ids
        if cid in known.mirrors and not known.mirrors[cid][2] and cid not in known.linked
    ]
    subscriptions = load_subscriptions(session, todo)
    companies = billed_companies(session, ctx, todo, known, subscriptions)
    name_companies(session, todo, companies, known)
    subscribed = [cid for cid in todo if subscriptions.get(cid)]
    sync_companies(session, ctx, subscribed, companies, subscriptions=subscriptions)
    return len(todo)


def link_customers(
    engine: Engine,
    *,
    result: SweepResult,
    now: datetime,
    past_due_grace_days: int = 0,
    page_size: int | None = None,
    workers: int = 2,
    stats: PlannerStats | None = None,
    on_progress: Progress | None = None,
) -> None:
    """The sweep's closing pass: companies for the customers its subscriptions gave none."""
    page_size = page_size or automatic_page_size(workers)

    def apply(session: Session, ctx: MappingContext, page: Sequence[JSON]) -> SweepResult:
        return SweepResult(linked=link_page(session, ctx, [str(c["id"]) for c in page]))

    pool = PagePool(
        engine,
        "customer_link",
        None,  # the unlinked are found again from the start: no cursor to keep
        apply,
        partial(MappingContext, now=now, past_due_grace_days=past_due_grace_days),
        result=result,
        workers=workers,
        stats=stats,
        on_progress=on_progress,
    )
    with pool:
        for page in unlinked_customers(engine, page_size):
            pool.submit(page)
