"""Rewrites companies whose state expires with time (a trial ends, an override or grant expires).

Nothing is written to the change log when time crosses such a boundary, so the adapter keeps
its own schedule: after each company write, the company's next boundary (from the load) is
queued here, and a small thread hands the due companies back to the adapter for a rewrite.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable, Iterable

import structlog

log = structlog.get_logger(__name__)

RETRY_S = 5.0


class BoundaryTimer:
    def __init__(
        self, on_due: Callable[[list[str]], None], *, clock: Callable[[], float] = time.time
    ) -> None:
        self._on_due = on_due
        self._clock = clock
        self._heap: list[tuple[float, str]] = []
        self._cond = threading.Condition()
        self._stopped = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="syncd-redis-boundaries", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def schedule(self, items: Iterable[tuple[str, float]]) -> None:
        with self._cond:
            for company_id, at in items:
                heapq.heappush(self._heap, (at, company_id))
            self._cond.notify_all()

    def _take_due(self) -> list[str] | None:
        """Wait until something is due (or stop); a stale entry only costs one extra rewrite."""
        with self._cond:
            while not self._stopped:
                now = self._clock()
                if self._heap and self._heap[0][0] <= now:
                    due: set[str] = set()
                    while self._heap and self._heap[0][0] <= now:
                        due.add(heapq.heappop(self._heap)[1])
                    return sorted(due)
                self._cond.wait(min(self._heap[0][0] - now, 60.0) if self._heap else 60.0)
            return None

    def _run(self) -> None:
        while (due := self._take_due()) is not None:
            try:
                self._on_due(due)
            except Exception as exc:  # Redis or the database down: try these again shortly
                log.warning("redis_boundary_rewrite_failed", companies=len(due), error=str(exc))
                self.schedule((cid, self._clock() + RETRY_S) for cid in due)
