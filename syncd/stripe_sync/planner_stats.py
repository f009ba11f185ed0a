"""Planner statistics kept current while a sweep bulk-loads.

A first backfill writes tens of thousands of rows in seconds, long before autovacuum's next
``ANALYZE`` (it naps a minute, then waits for 10% growth). Until then Postgres plans a page's
reads (``... = ANY(:ids)``) for the near-empty tables it last saw: sequential scans, so each
page costs more than the one before and a large account's backfill goes quadratic. The sweep
therefore analyzes the tables it reads once its own writes reach a first threshold, then each
time they have quadrupled (about log4 of the account's size runs, tens of milliseconds each),
and once more when it ends. The first refresh is the one that matters: it replaces the empty
tables' plans; between later ones Postgres scales its row estimates by each table's current
size in pages, so they only keep the sampled spread of the ids current.

The count restarts with each pass (:meth:`PlannerStats.new_pass`): the subscriptions pass
fills ``company`` and its keys and plans, which the customers pass, before it, left empty,
and until the next refresh Postgres would check every foreign key to ``company`` (three a
new company) by a sequential scan of it.
"""

from __future__ import annotations

import threading

import structlog
from sqlalchemy import text
from sqlalchemy.engine import Engine

log = structlog.get_logger(__name__)

# The tables a sweep page reads by id lists (mirror, companies, their plans and keys).
ANALYZE = text(
    "ANALYZE stripe_product, stripe_price, stripe_customer, stripe_subscription,"
    " stripe_subscription_schedule, company, company_key, company_plan, company_trait,"
    " scheduled_downgrade, credit_grant"
)
FIRST = 1_000  # objects written before the first refresh
GROWTH = 4  # then each time the pass's writes have grown this many times
# A sweep's own refreshes sample 3,000 rows a table (300 x target) instead of 30,000: what its
# reads need is each table's size and the ids' spread, which a small sample gives; a full
# sample, sorting every text column, grew to ~90 ms a refresh by 10,000 subscriptions. The
# refresh closing the sweep (and autovacuum's, later) uses the configured target again.
SWEEP_TARGET = text("SET LOCAL default_statistics_target = 10")
# Never queue behind a long lock (an anti-wraparound vacuum, a migration): skip this refresh.
LOCK_TIMEOUT = text("SET LOCAL lock_timeout = '2s'")


class PlannerStats:
    """Counts a sweep's writes and refreshes the statistics when they quadruple (Postgres only;
    SQLite plans these reads by their indexes without statistics)."""

    def __init__(self, engine: Engine, *, first: int | None = None) -> None:
        self.engine = engine
        self.enabled = engine.dialect.name == "postgresql"
        self.written = 0
        self.refreshes = 0
        self._first = FIRST if first is None else first
        self._start = 0  # written when the current pass began
        self._next = self._first  # due when the pass has written this many
        self._lock = threading.Lock()

    def new_pass(self) -> None:
        """A pass over another kind begins: count its writes from the first threshold."""
        with self._lock:
            self._start, self._next = self.written, self._first

    def add(self, count: int) -> None:
        """``count`` more objects were written; refresh if the pass's writes have quadrupled."""
        with self._lock:
            self.written += count
            done = self.written - self._start
            due = self.enabled and done >= self._next
            if due:
                self._next = done * GROWTH
        if due:
            self.refresh(sampled=True)

    def refresh(self, *, sampled: bool = False) -> None:
        """Analyze the tables now; ``sampled``: with the sweep's small sample."""
        if not self.enabled:
            return
        try:
            with self.engine.connect() as conn:
                conn.execute(LOCK_TIMEOUT)
                if sampled:
                    conn.execute(SWEEP_TARGET)
                conn.execute(ANALYZE)  # tables of another owner: Postgres warns and skips them
                conn.commit()
        except Exception as exc:  # statistics are an optimisation: the sweep goes on without
            log.warning("planner_stats_refresh_failed", error=str(exc))
            return
        with self._lock:
            self.refreshes += 1
        log.debug("planner_stats_refreshed", written=self.written)
