"""The sweep's page pool on Postgres: pages on several threads, out-of-order commits, a cursor
that never passes an uncommitted page, retries of lost races, the applier's locks respected,
and planner statistics kept current while a first backfill loads."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from syncd import migrate
from syncd.db import make_engine
from syncd.models import SyncCursor, utcnow
from syncd.stripe_sync.locks import lock_objects
from syncd.stripe_sync.mapping import MappingContext
from syncd.stripe_sync.normalize import JSON
from syncd.stripe_sync.planner_stats import PlannerStats
from syncd.stripe_sync.replay import read_cursor
from syncd.stripe_sync.sweep import page_pool
from syncd.stripe_sync.sweep_pool import PagePool, SweepResult


@pytest.fixture
def engine(postgres_url: str) -> Iterator[Engine]:
    eng = make_engine(postgres_url)
    migrate.upgrade(eng)
    yield eng
    eng.dispose()


def _pages(count: int, size: int = 2) -> list[list[JSON]]:
    return [[{"id": f"obj_{p}_{i}", "object": "customer"} for i in range(size)] for p in range(count)]


def _pool(engine: Engine, apply: Any, **kwargs: Any) -> PagePool:
    def context() -> MappingContext:
        return MappingContext(now=utcnow())

    return PagePool(engine, "customer", "sweep:customer", apply, context, result=SweepResult(), **kwargs)


def _marker(session: Session, page: Sequence[JSON]) -> None:
    """A row per page, committed (or not) with the page."""
    session.add(SyncCursor(name=f"page:{page[0]['id']}", value="done"))


def test_pages_commit_out_of_order_and_the_cursor_waits_for_the_slow_one(engine: Engine) -> None:
    pages = _pages(4)
    seen_cursor: list[str | None] = []

    def apply(session: Session, ctx: MappingContext, page: Sequence[JSON]) -> SweepResult:
        if page is pages[0]:
            time.sleep(0.3)  # the first page commits last
        else:
            seen_cursor.append(read_cursor(engine, "sweep:customer")[0])
        _marker(session, page)
        return SweepResult(stored=len(page))

    pool = _pool(engine, apply, workers=3)
    with pool:
        for page in pages:
            pool.submit(page)
    # While page 0 was still open, no later page moved the cursor past it.
    assert set(seen_cursor) <= {None}
    assert read_cursor(engine, "sweep:customer")[0] == "obj_3_1"
    assert pool.count == 8 and pool.result.stored == 8


def test_a_page_that_fails_for_good_leaves_the_cursor_before_it(engine: Engine) -> None:
    pages = _pages(5)

    def apply(session: Session, ctx: MappingContext, page: Sequence[JSON]) -> SweepResult:
        if page is pages[2]:
            raise ValueError("poison page")
        _marker(session, page)
        return SweepResult(stored=len(page))

    pool = _pool(engine, apply, workers=2)

    def run() -> None:
        with pool:
            for page in pages:
                pool.submit(page)

    with pytest.raises(ValueError, match="poison"):
        run()
    # Pages 0 and 1 are the committed run from the start: the cursor ends there, whatever
    # later pages managed to commit, so a resumed sweep re-lists page 2 onwards.
    assert read_cursor(engine, "sweep:customer")[0] == "obj_1_1"
    with Session(engine) as session:
        assert session.get(SyncCursor, "page:obj_2_0") is None


def test_a_lost_race_is_retried_and_counted_once(engine: Engine) -> None:
    attempts: list[int] = []

    def apply(session: Session, ctx: MappingContext, page: Sequence[JSON]) -> SweepResult:
        attempts.append(1)
        _marker(session, page)
        if len(attempts) == 1:
            raise OperationalError("UPDATE ...", {}, Exception("deadlock detected"))
        return SweepResult(stored=len(page))

    pool = _pool(engine, apply, workers=2)
    with pool:
        pool.submit(_pages(1)[0])
    assert len(attempts) == 2
    assert pool.count == 2 and pool.result.stored == 2  # the failed attempt left nothing
    assert read_cursor(engine, "sweep:customer")[0] == "obj_0_1"


def test_a_sweep_page_waits_for_the_applier_holding_its_customer(engine: Engine) -> None:
    """Both take the customer's advisory lock first: never two writers for one customer."""
    customer: JSON = {"id": "cus_shared", "object": "customer", "name": "Shared"}
    result = SweepResult()
    pool = page_pool(engine, None, "customer", created=1, result=result, now=utcnow(), workers=2)
    holder = Session(engine)
    lock_objects(holder, [("subscription", {"id": "sub_x", "customer": "cus_shared"})])
    done = threading.Event()

    def sweep_page() -> None:
        with pool:
            pool.submit([customer])
        done.set()

    worker = threading.Thread(target=sweep_page)
    worker.start()
    assert not done.wait(0.5)  # blocked behind the applier's transaction
    holder.rollback()
    holder.close()
    assert done.wait(10)
    worker.join()
    assert result.stored == 1


def test_planner_statistics_follow_a_first_backfill(engine: Engine) -> None:
    stats = PlannerStats(engine, first=100)
    result = SweepResult()
    pool = page_pool(engine, None, "customer", created=1, result=result, now=utcnow(), workers=2, stats=stats)
    with pool:
        for start in range(0, 2000, 100):
            pool.submit(
                [
                    {"id": f"cus_{n:04d}", "object": "customer", "name": f"N{n}"}
                    for n in range(start, start + 100)
                ]
            )
    assert stats.written == 2000
    assert stats.refreshes == 3  # at 100, 400 and 1,600 objects
    with engine.connect() as conn:
        analyzed = conn.execute(
            text("SELECT analyze_count FROM pg_stat_user_tables WHERE relname = 'company_key'")
        ).scalar()
        plan = "\n".join(
            row[0]
            for row in conn.execute(
                text(
                    "EXPLAIN SELECT company_id FROM company_key WHERE key = 'stripe_customer_id'"
                    " AND value = ANY(ARRAY['cus_0001', 'cus_0002'])"
                )
            )
        )
    assert analyzed is not None and analyzed >= 1
    assert "Seq Scan" not in plan, plan  # planned for 2,000 rows, not for the empty table


def _histogram_bounds(engine: Engine) -> int:
    with engine.connect() as conn:
        bounds = conn.execute(
            text(
                "SELECT array_length(histogram_bounds::text::text[], 1) FROM pg_stats"
                " WHERE tablename = 'stripe_customer' AND attname = 'stripe_id'"
            )
        ).scalar()
    return int(bounds or 0)


def test_refreshes_during_a_sweep_sample_small_and_the_closing_one_does_not(engine: Engine) -> None:
    """A sweep's own refreshes use a small statistics target (cheap on a large account); the
    one closing the sweep uses the configured target, for the applier's plans afterwards."""
    stats = PlannerStats(engine, first=100)
    pool = page_pool(engine, None, "customer", created=1, result=SweepResult(), now=utcnow(), stats=stats)
    with pool:
        for start in range(0, 300, 100):
            pool.submit(
                [
                    {"id": f"cus_h{n:04d}", "object": "customer", "name": "H"}
                    for n in range(start, start + 100)
                ]
            )
    assert stats.refreshes == 1  # at 100 objects (the next at 400)
    assert 0 < _histogram_bounds(engine) <= 11  # statistics target 10: at most 11 bounds
    stats.refresh()
    assert _histogram_bounds(engine) > 11  # the configured target (100 by default)


def test_planner_statistics_restart_with_each_pass(engine: Engine) -> None:
    """The subscriptions pass fills ``company``, which the customers pass left empty: its
    first refresh comes after its own first threshold, not after the sweep's total doubled."""
    stats = PlannerStats(engine, first=100)
    stats.add(150)
    stats.add(100)  # 250: not yet four times the 150 of the last refresh
    assert stats.refreshes == 1
    stats.new_pass()
    stats.add(60)
    assert stats.refreshes == 1
    stats.add(40)  # this pass's first 100
    assert (stats.refreshes, stats.written) == (2, 350)
    pool = page_pool(engine, None, "customer", created=1, result=SweepResult(), now=utcnow(), stats=stats)
    with pool:  # each pool is a pass
        pool.submit([{"id": f"cus_p{n:03d}", "object": "customer", "name": "P"} for n in range(100)])
    assert stats.refreshes == 3

    def link(session: Session, ctx: MappingContext, page: Sequence[JSON]) -> SweepResult:
        return SweepResult(linked=len(page))  # the closing pass: it stores nothing, it links

    with _pool(engine, link, stats=stats) as linking:
        linking.submit(_pages(1, size=100)[0])
    assert stats.refreshes == 4  # companies it created count as written


def test_on_sqlite_pages_run_in_the_calling_thread(sqlite_url: str) -> None:
    eng = make_engine(sqlite_url)
    migrate.upgrade(eng)
    threads: list[str] = []

    def apply(session: Session, ctx: MappingContext, page: Sequence[JSON]) -> SweepResult:
        threads.append(threading.current_thread().name)
        return SweepResult(stored=len(page))

    pool = _pool(eng, apply, workers=4)
    with pool:
        for page in _pages(3):
            pool.submit(page)
    assert pool.workers == 1 and set(threads) == {threading.current_thread().name}
    assert read_cursor(eng, "sweep:customer")[0] == "obj_2_1"
    eng.dispose()


def test_worker_threads_log_with_the_callers_context(engine: Engine) -> None:
    """A nightly job binds its name and run id; a page's log lines on a worker carry them."""
    import structlog

    seen: list[dict[str, Any]] = []

    def apply(session: Session, ctx: MappingContext, page: Sequence[JSON]) -> SweepResult:
        seen.append(structlog.contextvars.get_contextvars())
        return SweepResult(stored=len(page))

    with structlog.contextvars.bound_contextvars(job="reconcile_stripe", job_run="r1"):
        pool = _pool(engine, apply, workers=2)
        with pool:
            for page in _pages(3):
                pool.submit(page)
    assert seen and all(found.get("job_run") == "r1" for found in seen)


def test_company_locks_stay_inside_the_lock_table(engine: Engine) -> None:
    """A page's companies are locked; a product re-link re-mapping thousands of companies in
    one transaction goes without (the shared lock table would run out)."""
    from syncd.stripe_sync.locks import COMPANY_LOCKS_MAX, lock_companies

    def advisory_held(session: Session) -> int:
        return int(
            session.execute(
                text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()")
            ).scalar_one()
        )

    with Session(engine) as session:
        lock_companies(session, [f"comp_{n}" for n in range(250)])
        assert advisory_held(session) == 250
    with Session(engine) as session:
        lock_companies(session, [f"comp_{n}" for n in range(COMPANY_LOCKS_MAX + 1)])
        assert advisory_held(session) == 0
