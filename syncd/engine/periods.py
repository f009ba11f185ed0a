"""Metric periods: where the current period starts and when it next resets.

Calendar periods are UTC: days start at 00:00, weeks on Sunday 00:00, months on the 1st.
``billing_cycle`` months are anchored on the subscription's ``period_start`` (its day of month
and time of day), with the anchor day clamped to the month's length (an anchor on the 31st
resets on 28/29 February, not on 3 March as Go's date normalisation would), the period start
never earlier than ``period_start`` and the next reset never later than ``period_end``.
"""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass

from syncd.engine.wire import Subscription

UTC = dt.UTC
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)


def _midnight(now: dt.datetime) -> dt.datetime:
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def _add_months(year: int, month: int, delta: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + delta
    return index // 12, index % 12 + 1


def _month_start(year: int, month: int) -> dt.datetime:
    return dt.datetime(year, month, 1, tzinfo=UTC)


def _anchored(year: int, month: int, anchor: dt.datetime) -> dt.datetime:
    """The anchor's day (clamped to the month's length) and time of day in a given month."""
    day = min(anchor.day, calendar.monthrange(year, month)[1])
    return anchor.replace(year=year, month=month, day=day)


def calendar_period_start(period: str, now: dt.datetime) -> dt.datetime | None:
    """Start of the calendar period containing ``now``; ``None`` for all_time."""
    if period == "current_day":
        return _midnight(now)
    if period == "current_week":
        # Python's weekday(): Monday=0 .. Sunday=6; weeks start on Sunday.
        return _midnight(now) - dt.timedelta(days=(now.weekday() + 1) % 7)
    if period == "current_month":
        return _month_start(now.year, now.month)
    return None


def calendar_next_reset(period: str, now: dt.datetime) -> dt.datetime | None:
    """The next calendar boundary strictly after ``now``; ``None`` for all_time."""
    start = calendar_period_start(period, now)
    if start is None:
        return None
    if period == "current_day":
        return start + dt.timedelta(days=1)
    if period == "current_week":
        return start + dt.timedelta(days=7)
    year, month = _add_months(start.year, start.month, 1)
    return _month_start(year, month)


def billing_period_start(sub: Subscription | None, now: dt.datetime) -> dt.datetime:
    """Start of the billing-anchored month containing ``now``."""
    if sub is None or sub.period_start > now:
        return _month_start(now.year, now.month)
    anchor = sub.period_start.astimezone(UTC)
    start = _anchored(now.year, now.month, anchor)
    if start > now:
        year, month = _add_months(now.year, now.month, -1)
        start = _anchored(year, month, anchor)
    return max(start, anchor)


def billing_next_reset(sub: Subscription | None, now: dt.datetime) -> dt.datetime:
    """The next billing-anchored month boundary after ``now``, capped at ``period_end``."""
    year, month = _add_months(now.year, now.month, 1)
    calendar_next = _month_start(year, month)
    if sub is None:
        return calendar_next
    if sub.period_start > now:
        return min(calendar_next, sub.period_start)
    anchor = sub.period_start.astimezone(UTC)
    nxt = _anchored(now.year, now.month, anchor)
    if nxt <= now:
        year, month = _add_months(now.year, now.month, 1)
        nxt = _anchored(year, month, anchor)
    return min(nxt, sub.period_end)


def period_start(
    period: str | None, month_reset: str | None, sub: Subscription | None, now: dt.datetime
) -> dt.datetime | None:
    """Start of the metric period containing ``now`` (``None`` for all_time)."""
    if period == "current_month" and month_reset == "billing_cycle":
        return billing_period_start(sub, now)
    return calendar_period_start(period or "all_time", now)


def next_reset(
    period: str | None, month_reset: str | None, sub: Subscription | None, now: dt.datetime
) -> dt.datetime | None:
    """When a metric with this period next resets (``None``: never, i.e. all_time)."""
    if period is None or period == "all_time":
        return None
    if period == "current_month" and month_reset == "billing_cycle":
        return billing_next_reset(sub, now)
    return calendar_next_reset(period, now)


@dataclass(slots=True, frozen=True)
class BucketKey:
    """One pre-aggregated metric counter an event contributes to."""

    event_subtype: str
    period: str
    month_reset: str
    start: dt.datetime | None  # None for all_time

    def storage_key(self) -> str:
        start = "-" if self.start is None else str(int(self.start.timestamp()))
        return f"{self.event_subtype}:{self.period}:{self.month_reset}:{start}"


def event_buckets(event_subtype: str, ts: dt.datetime, sub: Subscription | None) -> tuple[BucketKey, ...]:
    """Every (period, month_reset, period start) counter an event at ``ts`` counts toward.

    A new period's counter starts at zero the instant the period begins: an event exactly on a
    boundary belongs to the new period only.
    """
    ts = ts.astimezone(UTC)
    return (
        BucketKey(event_subtype, "all_time", "first_of_month", None),
        BucketKey(event_subtype, "current_day", "first_of_month", _midnight(ts)),
        BucketKey(
            event_subtype,
            "current_week",
            "first_of_month",
            calendar_period_start("current_week", ts),
        ),
        BucketKey(event_subtype, "current_month", "first_of_month", _month_start(ts.year, ts.month)),
        BucketKey(event_subtype, "current_month", "billing_cycle", billing_period_start(sub, ts)),
    )
