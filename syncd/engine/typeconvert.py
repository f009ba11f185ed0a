"""Typed comparison of trait values (int, string, bool, date) for every operator.

Behaviour follows the official WASM engine, observed by differential testing, where it differs
from the Go engine's documentation:

* int values parse as an integer, else as a finite float, else 0 (``"1.5"`` is 1.5, ``" 12"``
  is 0, ``"inf"`` is 0). Two integers compare exactly; otherwise both compare as floats.
* bool: ``"true"`` and ``"1"`` are true, anything else false; only ``eq``/``ne`` can match.
* date: a value that parses under none of the engine's layouts is "nil", and nil orders before
  every date (``Option`` ordering), so ``nil == nil``. Date-only layouts never parse because the
  engine requires a time of day.
"""

from __future__ import annotations

import calendar
import operator as operator_module
import re
from collections.abc import Callable
from typing import Any

Number = int | float
# A parsed date: (UTC epoch seconds, nanoseconds). A leap second keeps its second at :59 and
# carries nanoseconds >= 1e9, which is how chrono orders it (after :59, before the next minute).
DateKey = tuple[int, int]

_I64_MIN = -(2**63)
_I64_MAX = 2**63 - 1
_INT_RE = re.compile(r"[+-]?[0-9]+\Z")
# Rust's f64::from_str grammar (no whitespace, no underscores, no hex).
_FLOAT_RE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")


def parse_number(text: str) -> Number:
    """An int trait value as the engine reads it: i64, else finite f64, else 0."""
    if _INT_RE.match(text):
        value = int(text)
        if _I64_MIN <= value <= _I64_MAX:
            return value
    if _FLOAT_RE.match(text):
        f = float(text)
        if f not in (float("inf"), float("-inf")):
            return f
    return 0


def parse_i64(text: str) -> int | None:
    """Rust's ``str::parse::<i64>``: optional sign and ASCII digits only, in range."""
    if _INT_RE.match(text):
        value = int(text)
        if _I64_MIN <= value <= _I64_MAX:
            return value
    return None


def parse_bool(text: str) -> bool:
    return text in ("true", "1")


# Operators shared by every ordered type; emptiness is per type.
_ORDERED: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator_module.eq,
    "ne": operator_module.ne,
    "gt": operator_module.gt,
    "lt": operator_module.lt,
    "gte": operator_module.ge,
    "lte": operator_module.le,
}


def compare_numbers(left: Number, right: Number, operator: str) -> bool:
    ordered = _ORDERED.get(operator)
    if ordered is not None:
        return ordered(left, right)
    if operator == "is_empty":
        return left == 0
    if operator == "not_empty":
        return left > 0
    return False


def compare_strings(left: str, right: str, operator: str) -> bool:
    # Python str ordering is code-point order, which equals Rust's UTF-8 byte order.
    ordered = _ORDERED.get(operator)
    if ordered is not None:
        return ordered(left, right)
    if operator == "is_empty":
        return left == ""
    if operator == "not_empty":
        return left != ""
    return False


def compare_bools(left: bool, right: bool, operator: str) -> bool:
    if operator == "eq":
        return left == right
    if operator == "ne":
        return left != right
    # is_empty is never true and not_empty always true: a bool always has a value.
    return operator == "not_empty"


def compare_dates(left: DateKey | None, right: DateKey | None, operator: str) -> bool:
    if operator == "is_empty":
        return left is None
    if operator == "not_empty":
        return left is not None
    # None sorts first, as Rust's Option<DateTime> does.
    lk = (0, (0, 0)) if left is None else (1, left)
    rk = (0, (0, 0)) if right is None else (1, right)
    return compare_numbers_tuple(lk, rk, operator)


def compare_numbers_tuple(left: tuple[int, DateKey], right: tuple[int, DateKey], operator: str) -> bool:
    if operator == "eq":
        return left == right
    if operator == "ne":
        return left != right
    if operator == "gt":
        return left > right
    if operator == "lt":
        return left < right
    if operator == "gte":
        return left >= right
    if operator == "lte":
        return left <= right
    return False


def compare_typed(comparable_type: str, left: str, right: str, operator: str) -> bool:
    """Compare two raw trait strings under a trait definition's comparable type."""
    if comparable_type == "int":
        return compare_numbers(parse_number(left), parse_number(right), operator)
    if comparable_type == "bool":
        return compare_bools(parse_bool(left), parse_bool(right), operator)
    if comparable_type == "date":
        return compare_dates(parse_date(left), parse_date(right), operator)
    return compare_strings(left, right, operator)


# --- date parsing -------------------------------------------------------------------------
# The engine tries, per layout, a zoned parse then a naive (UTC) parse, using chrono's strftime
# parser; then strict RFC 3339. What follows is a small re-implementation of chrono's parser
# for exactly the items those layouts use.

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

# Layouts in the engine's order; tokens: %x directives, " " (any whitespace), literals.
_LAYOUTS: tuple[tuple[str, ...], ...] = (
    ("%Y", "-", "%m", "-", "%d"),
    ("%Y", "-", "%m", "-", "%d", " ", "%H", ":", "%M", ":", "%S", " ", "%Z"),
    ("%Y", "-", "%m", "-", "%d", "T", "%H", ":", "%M", ":", "%S", "%.3f", "%z"),
    ("%a", " ", "%b", " ", "%d", " ", "%Y"),
    ("%a", " ", "%b", " ", "%d", " ", "%Y", " ", "%H", ":", "%M", ":", "%S", " ", "GMT", "%z"),
    ("%a", " ", "%b", " ", "%d", " ", "%Y", " ", "%H", ":", "%M", ":", "%S", " ", "%Z"),
)
_NUM_WIDTH = {"%Y": 4, "%m": 2, "%d": 2, "%H": 2, "%M": 2, "%S": 2}


class _Fail(Exception):
    """The input does not match the layout."""


def _digits(s: str, i: int, lo: int, hi: int) -> tuple[int, int]:
    j = i
    while j < len(s) and j - i < hi and "0" <= s[j] <= "9":
        j += 1
    if j - i < lo:
        raise _Fail
    return int(s[i:j]), j


def _skip_ws(s: str, i: int) -> int:
    while i < len(s) and s[i].isspace():
        i += 1
    return i


def _offset(s: str, i: int, *, colon_mandatory: bool, zulu: bool) -> tuple[int, int]:
    """chrono's scan::timezone_offset: [+-]HH, separator, MM; returns (seconds, next index)."""
    if zulu and i < len(s) and s[i] in "zZ":
        return 0, i + 1
    if i >= len(s) or s[i] not in "+-\u2212":
        raise _Fail
    sign = -1 if s[i] != "+" else 1
    i += 1
    if i + 2 > len(s) or not (s[i].isdigit() and s[i + 1].isdigit()):
        raise _Fail
    hours = int(s[i : i + 2])
    i += 2
    if colon_mandatory:
        if i >= len(s) or s[i] != ":":
            raise _Fail
        i += 1
    else:
        while i < len(s) and (s[i] == ":" or s[i].isspace()):
            i += 1
    if i + 2 > len(s) or not ("0" <= s[i] <= "5" and "0" <= s[i + 1] <= "9"):
        raise _Fail
    minutes = int(s[i : i + 2])
    return sign * (hours * 3600 + minutes * 60), i + 2


def _run_layout(layout: tuple[str, ...], s: str) -> dict[str, int]:
    f: dict[str, int] = {}
    i = 0
    for tok in layout:
        if tok == " ":
            i = _skip_ws(s, i)
        elif tok in _NUM_WIDTH:
            i = _skip_ws(s, i)
            if tok == "%Y" and i < len(s) and s[i] in "+-":
                sign = -1 if s[i] == "-" else 1
                v, i = _digits(s, i + 1, 1, 18)
                v *= sign
            else:
                v, i = _digits(s, i, 1, _NUM_WIDTH[tok])
            f[tok] = v
        elif tok in ("%a", "%b"):
            word = s[i : i + 3].lower()
            names = _WEEKDAYS if tok == "%a" else _MONTHS
            if len(word) < 3 or word not in names:
                raise _Fail
            f[tok] = names.index(word)
            i += 3
        elif tok == "%.3f":
            if i < len(s) and s[i] == ".":
                v, i = _digits(s, i + 1, 3, 3)
                f["nanos"] = v * 1_000_000
        elif tok == "%z":
            f["offset"], i = _offset(s, _skip_ws(s, i), colon_mandatory=False, zulu=False)
        elif tok == "%Z":
            while i < len(s) and not s[i].isspace():
                i += 1
        else:
            if not s.startswith(tok, i):
                raise _Fail
            i += len(tok)
    if i != len(s):
        raise _Fail
    return f


def _to_key(f: dict[str, int], offset: int) -> DateKey:
    if "%H" not in f:
        raise _Fail  # a date alone is not a datetime
    year, month, day = f["%Y"], f.get("%m", f.get("%b", -1) + 1), f["%d"]
    if not (1 <= month <= 12) or year < -262143 or year > 262142:
        raise _Fail
    if not 1 <= day <= _days_in_month(year, month):
        raise _Fail
    hour, minute, second = f["%H"], f["%M"], f["%S"]
    if hour > 23 or minute > 59 or second > 60:
        raise _Fail
    nanos = f.get("nanos", 0)
    if second == 60:  # leap second: chrono keeps :59 and adds a second's worth of nanos
        second, nanos = 59, nanos + 1_000_000_000
    days = _days_from_civil(year, month, day)
    if "%a" in f and (days + 3) % 7 != f["%a"]:  # 1970-01-01 was a Thursday (index 3)
        raise _Fail
    secs = days * 86400 + hour * 3600 + minute * 60 + second - offset
    return secs, nanos


def _days_in_month(year: int, month: int) -> int:
    if month == 2:
        return 29 if calendar.isleap(year) else 28
    return 30 if month in (4, 6, 9, 11) else 31


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's algorithm)."""
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _rfc3339(s: str) -> DateKey:
    m = re.match(
        r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?",
        s,
    )
    if m is None:
        raise _Fail
    frac = m.group(7)
    nanos = int((frac[1:10]).ljust(9, "0")) if frac else 0
    offset, end = _offset(s, m.end(), colon_mandatory=True, zulu=True)
    if end != len(s) or abs(offset) > (23 * 60 + 59) * 60:
        raise _Fail
    f = {
        "%Y": int(m.group(1)),
        "%m": int(m.group(2)),
        "%d": int(m.group(3)),
        "%H": int(m.group(4)),
        "%M": int(m.group(5)),
        "%S": int(m.group(6)),
        "nanos": nanos,
    }
    return _to_key(f, offset)


def parse_date(text: str) -> DateKey | None:
    """Parse a date trait value as the engine does; ``None`` when no layout accepts it."""
    for layout in _LAYOUTS:
        try:
            fields = _run_layout(layout, text)
        except _Fail:
            continue
        offset = fields.get("offset")
        # A zoned parse needs a representable offset; otherwise chrono's naive parse of the
        # same layout succeeds and the time is taken as UTC.
        if offset is None or abs(offset) >= 86400:
            offset = 0
        try:
            return _to_key(fields, offset)
        except _Fail:
            continue
    try:
        return _rfc3339(text)
    except _Fail:
        return None
