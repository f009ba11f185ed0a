"""The emulator's controllable clock and calendar arithmetic for billing periods.

Emulator time starts at the real "now" (or a given instant) and never moves on its own:
only :meth:`Clock.set` (driven by ``POST /_emulator/clock/advance`` or the test-clock
API) moves it. All timestamps are integer Unix seconds, UTC.
"""

from __future__ import annotations

import calendar
import threading
import time
from datetime import UTC, datetime, timedelta

__all__ = ["DAY", "Clock", "add_interval", "period_boundary"]

DAY = 86_400
_SECONDS = {"day": DAY, "week": 7 * DAY}


class Clock:
    """A frozen clock that only moves forward when told to."""

    def __init__(self, start: int | None = None) -> None:
        self._lock = threading.Lock()
        self._now = int(time.time()) if start is None else int(start)

    def now(self) -> int:
        with self._lock:
            return self._now

    def set(self, ts: int) -> None:
        with self._lock:
            if ts < self._now:
                raise ValueError(f"the clock cannot move backwards ({ts} < {self._now})")
            self._now = int(ts)

    def reset(self, start: int | None = None) -> None:
        with self._lock:
            self._now = int(time.time()) if start is None else int(start)


def _add_months(ts: int, months: int) -> int:
    dt = datetime.fromtimestamp(ts, UTC)
    total = dt.month - 1 + months
    year, month = dt.year + total // 12, total % 12 + 1
    day = min(dt.day, calendar.monthrange(year, month)[1])
    return int(dt.replace(year=year, month=month, day=day).timestamp())


def add_interval(ts: int, interval: str, count: int = 1) -> int:
    """``ts`` plus ``count`` intervals (``day``, ``week``, ``month``, ``year``)."""
    if interval in _SECONDS:
        return ts + _SECONDS[interval] * count
    if interval == "month":
        return _add_months(ts, count)
    if interval == "year":
        return _add_months(ts, 12 * count)
    raise ValueError(f"unknown interval {interval!r}")


def period_boundary(anchor: int, interval: str, count: int, k: int) -> int:
    """The k-th period boundary after ``anchor``, computed from the anchor itself so
    that month-end anchors do not drift (Jan 31 → Feb 28 → Mar 31)."""
    return add_interval(anchor, interval, count * k)


def iso(ts: int) -> str:
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=ts)).isoformat()
