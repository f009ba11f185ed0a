"""Typed comparison: int, string, bool and date parsing and every operator.

Each table is also replayed through the official WASM engine, so a row that drifts from the
oracle fails here with a readable name rather than somewhere in the differential suite.
"""

from __future__ import annotations

import datetime as dt

import pytest

from syncd.engine.flagcheck import check_flag
from syncd.engine.typeconvert import compare_typed, parse_bool, parse_date, parse_i64, parse_number
from syncd.engine.wire import Company, Condition, Flag, Rule, Trait, TraitDefinition
from tests.engine._wasm import WasmOracle

NOW = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)
OPS = ("eq", "ne", "gt", "lt", "gte", "lte", "is_empty", "not_empty")


def _epoch(text: str) -> int:
    return int(dt.datetime.fromisoformat(text).timestamp())


def _trait_case(ctype: str, op: str, left: str, right: str) -> tuple[Flag, Company]:
    td = TraitDefinition("t", ctype, "company")
    cond = Condition("trait", op, id="c", trait_definition=td, trait_value=right)
    flag = Flag("f", "k", False, [Rule("r", "standard", True, "R", conditions=[cond])])
    return flag, Company("co", traits=[Trait(left, td)])


def both(wasm: WasmOracle, ctype: str, op: str, left: str, right: str) -> bool:
    """Evaluate one trait comparison with both engines; they must agree."""
    flag, company = _trait_case(ctype, op, left, right)
    ours = check_flag(flag, company, None, None, NOW).value
    theirs = wasm.check(flag, company, None, None, NOW)
    assert theirs is not None
    assert ours == theirs["value"], (ctype, op, left, right)
    return ours


INT_ROWS = [
    ("5", "5", "T...TT.T"),
    ("1.5", "1", ".TT.T..T"),  # a decimal is compared as a float, not truncated
    (" 12", "12", ".T.T.TT."),  # whitespace makes it unparsable: 0
    ("12abc", "0", "T...TTT."),
    ("-3", "0", ".T.T.T.."),  # negative: neither empty nor "not empty" (> 0)
    ("inf", "1", ".T.T.TT."),  # non-finite reads as 0
    ("9007199254740993", "9007199254740992", ".TT.T..T"),  # exact integer comparison
    ("1e3", "1000", "T...TT.T"),
]


@pytest.mark.parametrize(("left", "right", "expect"), INT_ROWS)
def test_int_comparisons(wasm: WasmOracle, left: str, right: str, expect: str) -> None:
    got = "".join("T" if both(wasm, "int", op, left, right) else "." for op in OPS)
    assert got == expect


def test_bool_only_true_and_one_are_true(wasm: WasmOracle) -> None:
    assert parse_bool("true") and parse_bool("1")
    assert not any(parse_bool(v) for v in ("TRUE", "True", "t", "yes", " true", ""))
    assert both(wasm, "bool", "eq", "1", "true")
    assert both(wasm, "bool", "eq", "TRUE", "false")  # both false
    assert not both(wasm, "bool", "gt", "true", "false")  # ordering never matches
    assert not both(wasm, "bool", "is_empty", "", "")  # a bool is never empty
    assert both(wasm, "bool", "not_empty", "", "")


def test_string_comparison_is_code_point_order(wasm: WasmOracle) -> None:
    assert both(wasm, "string", "lt", "B", "a")
    assert both(wasm, "string", "gt", "é", "z")
    assert both(wasm, "string", "is_empty", "", "x")
    assert not both(wasm, "string", "not_empty", "", "x")


DATE_ROWS = [
    ("2024-01-02T00:00:00Z", _epoch("2024-01-02T00:00:00+00:00")),
    ("2024-01-02t00:00:00z", _epoch("2024-01-02T00:00:00+00:00")),
    ("2024-01-02T03:04:05+0200", _epoch("2024-01-02T01:04:05+00:00")),
    ("2024-01-02T03:04:05.678+02:00", _epoch("2024-01-02T01:04:05+00:00")),
    ("Tue Jan 02 2024 00:00:00 GMT+0100", _epoch("2024-01-01T23:00:00+00:00")),
    ("Mon Jan 1 2024 16:00:00 GMT-08:00", _epoch("2024-01-02T00:00:00+00:00")),
    # A zone abbreviation is skipped, not applied: PST reads as UTC.
    ("2024-01-02 00:00:00 PST", _epoch("2024-01-02T00:00:00+00:00")),
    ("Mon Jan 01 2024 16:00:00 PST", _epoch("2024-01-01T16:00:00+00:00")),
    ("2024-01-02 00:00:00", _epoch("2024-01-02T00:00:00+00:00")),
    # An offset chrono cannot represent falls back to the naive (UTC) reading.
    ("2024-01-02T00:00:00+24:00", _epoch("2024-01-02T00:00:00+00:00")),
]


@pytest.mark.parametrize(("text", "epoch"), DATE_ROWS)
def test_date_layouts(wasm: WasmOracle, text: str, epoch: int) -> None:
    key = parse_date(text)
    assert key is not None and key[0] == epoch
    ref = dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert both(wasm, "date", "gte", text, ref)
    assert not both(wasm, "date", "is_empty", text, "")


UNPARSABLE_DATES = [
    "2024-01-02",  # date-only layouts never parse: the engine requires a time of day
    "Tue Jan 02 2024",
    "Mon Jan 01 2024 16:00:00 GMT-0800 (Pacific Standard Time)",  # JS Date.toString()
    "Wed Jan 02 2024 00:00:00 UTC",  # the weekday is checked against the date
    "2024-02-30T00:00:00Z",
    "2024-01-02T03:04:05.6+0200",  # '%.3f' wants exactly three digits
    "2024-01-02 00:00:00 UTC extra",
    "",
]


@pytest.mark.parametrize("text", UNPARSABLE_DATES)
def test_unparsable_dates_are_nil(wasm: WasmOracle, text: str) -> None:
    assert parse_date(text) is None
    assert both(wasm, "date", "is_empty", text, "")


def test_nil_date_orders_before_every_date(wasm: WasmOracle) -> None:
    # Option ordering: nil == nil, nil < any date.
    assert both(wasm, "date", "eq", "junk", "other junk")
    assert both(wasm, "date", "lt", "junk", "2024-01-02T00:00:00Z")
    assert both(wasm, "date", "gt", "2024-01-02T00:00:00Z", "junk")


def test_fractional_seconds_order(wasm: WasmOracle) -> None:
    assert both(wasm, "date", "gt", "2024-01-02T00:00:00.5Z", "2024-01-02T00:00:00Z")
    assert both(wasm, "date", "gt", "2016-12-31T23:59:60Z", "2016-12-31T23:59:59.999Z")


def test_number_parsers() -> None:
    assert parse_number("7") == 7 and parse_number("1.5") == 1.5 and parse_number("x") == 0
    assert parse_i64("+4") == 4 and parse_i64("1.5") is None and parse_i64(" 7") is None
    assert parse_i64("9223372036854775808") is None
    assert compare_typed("unknown-type", "b", "a", "gt")  # unknown types compare as strings
