"""Sweep pages applied on several threads, one transaction each, the cursor kept exact.

A page's work is about half Python (mapping, row building) and half waiting on Postgres, so
one thread leaves a core idle; with two, one thread maps while the other's page is in the
database. Pages of one kind are independent except through shared customers and companies,
and each page takes its customers' and then its companies' advisory locks (:mod:`.locks`; the
webhook applier takes the same), so two pages never map one company at the same time.

The cursor (``sweep:<kind>``) must never pass an uncommitted page, although pages may commit
out of order. Each page's transaction therefore writes the end of the longest run of pages
committed from the start, itself included, and commits under a lock so that those writes land
in order. A page that raises is retried (deadlocks, serialization failures, a dropped
connection); if it still fails the sweep stops and the cursor stays before it.

SQLite has a single writer: there the pool runs each page in the submitting thread.
"""

from __future__ import annotations

import contextvars
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from types import TracebackType

import structlog
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlmodel import Session
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

from ..collector import fewer_collections
from .mapping import MappingContext
from .normalize import JSON
from .planner_stats import PlannerStats
from .replay import write_cursor

log = structlog.get_logger(__name__)

Progress = Callable[[str, int], None]


@dataclass
class SweepResult:
    objects: dict[str, int] = field(default_factory=dict)
    stored: int = 0
    skipped_newer: int = 0
    unchanged: int = 0
    linked: int = 0
    """customers whose company the closing pass found or created (none of their
    subscriptions did)"""
    resumed: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.objects.values())

    def add(self, page: SweepResult) -> None:
        self.stored += page.stored
        self.skipped_newer += page.skipped_newer
        self.unchanged += page.unchanged
        self.linked += page.linked


PageFn = Callable[[Session, MappingContext, Sequence[JSON]], SweepResult]


# deadlock, serialization failure, and a unique key another writer (the API, say) took first
_RACES = frozenset({"40P01", "40001", "23505"})


def _transient(exc: BaseException) -> bool:
    """Worth another try: a lost race with another writer, or a lost connection. A retry
    maps the page afresh against what the other writer committed."""
    if isinstance(exc, OperationalError):
        return True
    code = getattr(getattr(exc, "orig", None), "sqlstate", None)
    return isinstance(exc, DBAPIError) and code in _RACES


class PagePool:
    """Applies one kind's pages: :meth:`submit` each, leave the ``with`` block to wait for all.

    ``apply`` maps one page inside the given session (the pool commits) and returns its
    tally, added to ``result`` once the page has committed. ``cursor``: the sync cursor to
    keep (None: a pass that finds its own place, needing none). Each worker thread has its own
    :class:`MappingContext` from ``new_context``: its caches are not shared."""

    def __init__(
        self,
        engine: Engine,
        kind: str,
        cursor: str | None,
        apply: PageFn,
        new_context: Callable[[], MappingContext],
        *,
        result: SweepResult,
        workers: int = 2,
        stats: PlannerStats | None = None,
        on_progress: Progress | None = None,
    ) -> None:
        self.engine, self.kind, self.cursor = engine, kind, cursor
        self.apply, self.new_context = apply, new_context
        self.result, self.stats, self.on_progress = result, stats, on_progress
        self.workers = workers if engine.dialect.name == "postgresql" else 1
        if stats is not None:
            stats.new_pass()
        self.count = 0
        self._local = threading.local()
        self._commit_lock = threading.Lock()
        self._ends: list[str] = []  # page index -> its last object id
        self._committed: set[int] = set()
        self._through = -1  # every page up to this index has committed
        self._inflight: deque[Future[None]] = deque()
        self._collector: AbstractContextManager[None] | None = None
        self._executor = (
            ThreadPoolExecutor(self.workers, thread_name_prefix=f"sweep-{kind}") if self.workers > 1 else None
        )

    def __enter__(self) -> PagePool:
        self._collector = fewer_collections()  # listed pages are many short-lived objects
        self._collector.__enter__()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if exc is None:
                while self._inflight:
                    self._inflight.popleft().result()
        finally:
            try:
                if self._executor is not None:
                    self._executor.shutdown(wait=True, cancel_futures=True)
            finally:
                if self._collector is not None:
                    self._collector.__exit__(None, None, None)
                    self._collector = None

    def submit(self, page: Sequence[JSON]) -> None:
        """Queue a page (blocks while ``2 * workers`` are queued: memory stays flat); raises
        the error of an earlier page that failed for good."""
        index = len(self._ends)
        self._ends.append(str(page[-1]["id"]))
        if self._executor is None:
            self._run(index, page)
            return
        while self._inflight and (self._inflight[0].done() or len(self._inflight) >= 2 * self.workers):
            self._inflight.popleft().result()
        # The job's log context (job, run id) follows the page into the worker thread.
        context = contextvars.copy_context()
        self._inflight.append(self._executor.submit(context.run, self._run, index, page))

    @retry(
        retry=retry_if_exception(_transient),
        stop=stop_after_attempt(4),
        wait=wait_exponential(multiplier=0.05, max=1.0),
        reraise=True,
    )
    def _run(self, index: int, page: Sequence[JSON]) -> None:
        ctx = getattr(self._local, "ctx", None)
        if ctx is None:
            ctx = self._local.ctx = self.new_context()
        try:
            with Session(self.engine) as session:
                tally = self.apply(session, ctx, page)
                with self._commit_lock:
                    through = self._run_end(index)
                    if through > self._through and self.cursor is not None:
                        write_cursor(session, self.cursor, self._ends[through])
                    session.commit()
                    self._committed.add(index)
                    if through > self._through:
                        self._committed.difference_update(range(self._through + 1, through + 1))
                        self._through = through
                    self.count += len(page)
                    self.result.add(tally)
                    if self.on_progress is not None:  # one thread at a time (progress bars)
                        self.on_progress(self.kind, len(page))
        except Exception:
            self._local.ctx = None  # a retry maps the page with fresh caches
            log.warning("stripe_sweep_page_failed", kind=self.kind, page=index, exc_info=True)
            raise
        if self.stats is not None:
            self.stats.add(tally.stored - tally.unchanged + tally.linked)  # written, not merely listed

    def _run_end(self, index: int) -> int:
        """The last page of the committed run from the start, counting ``index`` as
        committed (-1: a page before it has not committed yet)."""
        through = self._through
        while through + 1 == index or through + 1 in self._committed:
            through += 1
        return through
