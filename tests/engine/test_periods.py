"""Metric periods and resets, pinned with freezegun and checked against the WASM engine."""

from __future__ import annotations

import datetime as dt

import pytest
from freezegun import freeze_time

from syncd.engine.flagcheck import check_flag
from syncd.engine.periods import (
    billing_period_start,
    calendar_period_start,
    event_buckets,
    next_reset,
    period_start,
)
from syncd.engine.wire import Company, Condition, Flag, Rule, Subscription, parse_ts
from tests.engine._wasm import WasmOracle

UTC = dt.UTC


def utc(text: str) -> dt.datetime:
    return parse_ts(text)


def frozen_now(text: str) -> dt.datetime:
    with freeze_time(text):
        return dt.datetime.now(UTC)


def wasm_reset(
    wasm: WasmOracle, period: str, reset: str | None, sub: Subscription | None, now: dt.datetime
) -> dt.datetime | None:
    """The reset instant the official engine reports for a metered entitlement rule."""
    cond = Condition(
        "metric",
        "lt",
        id="c",
        event_subtype="api",
        metric_value=10,
        metric_period=period,
        metric_period_month_reset=reset,
    )
    flag = Flag("f", "k", False, [Rule("r", "plan_entitlement", True, "P", conditions=[cond])])
    company = Company("co", subscription=sub)
    ours = check_flag(flag, company, None, None, now).feature_usage_reset_at
    theirs = wasm.check(flag, company, None, None, now)
    assert theirs is not None
    theirs_reset = theirs["feature_usage_reset_at"]
    assert ours == (None if theirs_reset is None else parse_ts(theirs_reset))
    return ours


def test_week_resets_on_sunday_midnight(wasm: WasmOracle) -> None:
    saturday = frozen_now("2025-06-14T23:59:59Z")
    assert wasm_reset(wasm, "current_week", None, None, saturday) == utc("2025-06-15T00:00:00Z")
    assert calendar_period_start("current_week", saturday) == utc("2025-06-08T00:00:00Z")


def test_on_sunday_midnight_next_week_reset_is_seven_days_later(wasm: WasmOracle) -> None:
    sunday = frozen_now("2025-06-15T00:00:00Z")
    assert wasm_reset(wasm, "current_week", None, None, sunday) == utc("2025-06-22T00:00:00Z")
    assert calendar_period_start("current_week", sunday) == sunday


def test_day_and_month_boundaries(wasm: WasmOracle) -> None:
    now = frozen_now("2025-12-31T23:59:59Z")
    assert wasm_reset(wasm, "current_day", None, None, now) == utc("2026-01-01T00:00:00Z")
    assert wasm_reset(wasm, "current_month", "first_of_month", None, now) == utc("2026-01-01T00:00:00Z")
    assert wasm_reset(wasm, "all_time", None, None, now) is None
    assert next_reset(None, None, None, now) is None


ANCHOR_31 = Subscription("s", utc("2025-01-31T10:00:00Z"), utc("2026-01-31T10:00:00Z"))


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        ("2025-02-15T00:00:00Z", "2025-02-28T10:00:00Z"),  # clamped to February's length
        ("2025-02-28T10:00:00Z", "2025-03-31T10:00:00Z"),  # exactly on the anchor: next one
        ("2025-03-01T00:00:00Z", "2025-03-31T10:00:00Z"),
        ("2025-04-30T09:59:59Z", "2025-04-30T10:00:00Z"),  # 30-day month
        ("2025-12-31T10:00:00Z", "2026-01-31T10:00:00Z"),  # capped by period_end
    ],
)
def test_billing_anchor_on_the_31st_clamps(wasm: WasmOracle, now: str, expected: str) -> None:
    at = frozen_now(now)
    assert wasm_reset(wasm, "current_month", "billing_cycle", ANCHOR_31, at) == utc(expected)


@pytest.mark.parametrize("day", [29, 30, 31])
def test_billing_anchor_29th_to_31st_in_leap_february(wasm: WasmOracle, day: int) -> None:
    sub = Subscription("s", dt.datetime(2024, 1, day, 8, tzinfo=UTC), utc("2025-01-01T00:00:00Z"))
    now = frozen_now("2024-02-10T00:00:00Z")
    assert wasm_reset(wasm, "current_month", "billing_cycle", sub, now) == utc("2024-02-29T08:00:00Z")
    # The current period started on the anchor in January (never before period_start).
    assert billing_period_start(sub, now) == dt.datetime(2024, 1, day, 8, tzinfo=UTC)


def test_billing_period_start_after_clamped_february() -> None:
    now = frozen_now("2025-03-05T00:00:00Z")
    assert billing_period_start(ANCHOR_31, now) == utc("2025-02-28T10:00:00Z")


def test_billing_cycle_capped_at_period_end(wasm: WasmOracle) -> None:
    sub = Subscription("s", utc("2025-01-15T00:00:00Z"), utc("2025-03-01T12:00:00Z"))
    now = frozen_now("2025-02-20T00:00:00Z")
    assert wasm_reset(wasm, "current_month", "billing_cycle", sub, now) == utc("2025-03-01T12:00:00Z")


def test_billing_cycle_with_future_subscription_start(wasm: WasmOracle) -> None:
    sub = Subscription("s", utc("2025-06-10T00:00:00Z"), utc("2025-07-10T00:00:00Z"))
    now = frozen_now("2025-06-01T00:00:00Z")
    assert wasm_reset(wasm, "current_month", "billing_cycle", sub, now) == sub.period_start
    assert period_start("current_month", "billing_cycle", sub, now) == utc("2025-06-01T00:00:00Z")


def test_billing_cycle_without_subscription_is_calendar(wasm: WasmOracle) -> None:
    now = frozen_now("2025-06-20T00:00:00Z")
    assert wasm_reset(wasm, "current_month", "billing_cycle", None, now) == utc("2025-07-01T00:00:00Z")


def test_period_rollover_counts_from_zero_immediately() -> None:
    """An event exactly on a boundary belongs to the new period, whose counter starts at 0."""
    counters: dict[str, int] = {}
    sub = Subscription("s", utc("2025-01-31T10:00:00Z"), utc("2026-01-31T10:00:00Z"))
    for ts in ("2025-02-28T09:59:59Z", "2025-02-28T10:00:00Z", "2025-02-28T10:00:01Z"):
        for bucket in event_buckets("api", frozen_now(ts), sub):
            counters[bucket.storage_key()] = counters.get(bucket.storage_key(), 0) + 1

    def count(period: str, reset: str, at: str) -> int:
        start = period_start(period, reset, sub, frozen_now(at))
        key = [
            b
            for b in event_buckets("api", frozen_now(at), sub)
            if b.period == period and b.month_reset == reset and b.start == start
        ]
        return counters.get(key[0].storage_key(), 0)

    assert count("current_month", "billing_cycle", "2025-02-28T09:59:59Z") == 1
    assert count("current_month", "billing_cycle", "2025-02-28T10:00:00Z") == 2
    assert count("current_month", "first_of_month", "2025-02-28T12:00:00Z") == 3
    assert count("all_time", "first_of_month", "2025-02-28T12:00:00Z") == 3


def test_event_buckets_cover_every_period() -> None:
    buckets = event_buckets("api", frozen_now("2025-06-15T00:00:00Z"), None)
    assert [(b.period, b.month_reset) for b in buckets] == [
        ("all_time", "first_of_month"),
        ("current_day", "first_of_month"),
        ("current_week", "first_of_month"),
        ("current_month", "first_of_month"),
        ("current_month", "billing_cycle"),
    ]
    assert buckets[2].start == utc("2025-06-15T00:00:00Z")  # Sunday starts its own week
