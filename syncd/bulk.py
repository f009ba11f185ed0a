"""Many rows in one statement on Postgres: scalars as one JSON document, JSON columns beside it.

``executemany`` sends one protocol message per row and has the driver adapt every row's
parameters; for the hundreds of rows of a sweep page (or a webhook batch's plan moves) that
is most of the client's time, and one server execution per row. Here the rows' scalar values
are encoded as one document (:func:`dumps`) and the server expands it with
``json_to_recordset``, typed by the table's own column types: one statement, one plan, one
execution, whatever the row count. The statement text depends only on the table and the
columns, so it is built and prepared once.

JSON columns (a mirrored Stripe object, an audit snapshot) travel apart, one parameter per
column: the rows' values as JSON texts joined by newlines, which no JSON text contains raw
(both encoders escape control characters), zipped with the document's rows by ``ROWS FROM``.
Inside the document such a value would be parsed three times over (the document's input, the
record expansion, the column's input); apart, once. For a page of mirrored subscriptions that
is about four times less server time.

With the ``fast`` extra the document is encoded by orjson (a few times cheaper than
``json``); what orjson refuses (lone surrogates, integers beyond 64 bits, non-string keys)
takes ``json.dumps``. Both read back the same for what syncd stores: orjson writes non-ASCII
text as UTF-8 rather than escapes, a NaN float as null (``json.dumps`` would write ``NaN``,
which Postgres refuses; nothing syncd stores is NaN), and datetimes itself (no Python
callback per value), as ISO text with the offset, which ``json.dumps`` is given too (orjson
rounds an offset with seconds to the minute; syncd's datetimes are UTC).

Postgres only (:func:`supported`); callers keep ``executemany`` for SQLite. Values are stored
as the column types would bind them: a datetime as its instant (timestamp columns refuse a
naive one, as ``UTCDateTime`` does), and ``None`` in a JSON column is JSON ``null``, as
SQLAlchemy's JSON type binds it (SQL ``NULL`` for a column declared ``none_as_null``). Every
row must have the first row's keys (checked: a missing key would read as NULL).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Select,
    Table,
    Text,
    bindparam,
    cast,
    column,
    func,
    insert,
    literal_column,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.postgresql.dml import Insert as PgInsert
from sqlalchemy.sql.dml import Update
from sqlmodel import Session

from .models.base import UTCDateTime
from .rows_from import defined, rows_from

try:  # the `fast` extra
    import orjson as _orjson
except ImportError:  # pragma: no cover - exercised when the extra is not installed
    _orjson = None  # type: ignore[assignment]

Row = Mapping[str, Any]


def supported(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def insert_rows(session: Session, table: Table, rows: Sequence[Row]) -> None:
    """``INSERT`` the rows (all with the same keys) in one statement."""
    if not rows:
        return
    names = tuple(rows[0])
    document = params(table, names, rows)
    if document is None:
        session.execute(insert(table).inline(), list(rows))
    else:
        session.execute(_insert(table, names), document)


def update_rows(session: Session, table: Table, key: str, rows: Sequence[Row]) -> None:
    """``UPDATE`` each row's other columns where ``key`` matches, in one statement."""
    if not rows:
        return
    names = tuple(rows[0])
    document = params(table, names, rows)
    if document is not None:
        session.execute(_update(table, key, names), document)
        return
    statement = (
        update(table)
        .where(table.c[key] == bindparam(f"b_{key}"))
        .values({name: bindparam(f"b_{name}") for name in names if name != key})
    )
    session.execute(statement, [{f"b_{name}": row[name] for name in names} for row in rows])


def upsert(table: Table, names: Sequence[str]) -> PgInsert:
    """``INSERT ... SELECT unnest(...)`` for ``names``, to add an ``ON CONFLICT`` clause to."""
    return pg_insert(table).from_select(list(names), unnested(table, tuple(names)))


@cache
def layout(table: Table, names: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``names`` split into those the document carries and the JSON columns that travel apart."""
    apart = tuple(name for name in names if isinstance(table.c[name].type, JSON))
    return tuple(name for name in names if name not in apart), apart


@cache
def _timestamps(table: Table, names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(name for name in names if isinstance(table.c[name].type, DateTime | UTCDateTime))


def _check(table: Table, names: tuple[str, ...], rows: Sequence[Row]) -> None:
    """What the ORM's column types refuse, refused here too: rows whose keys differ from the
    first's (a missing key would read as NULL), and in timestamp columns naive datetimes and
    dates (``UTCDateTime`` refuses them: their instant would depend on the session's time
    zone) and offsets with seconds (which orjson rounds to the minute)."""
    keys = rows[0].keys()
    if any(row.keys() != keys for row in rows):
        raise ValueError(f"rows for {table.name} do not all have the same keys")
    for name in _timestamps(table, names):
        for row in rows:
            value = row[name]
            if isinstance(value, datetime):
                if value.tzinfo is None:
                    raise ValueError("naive datetime stored; use aware UTC datetimes")
                offset = value.utcoffset() if value.tzinfo is not UTC else None
                if offset is not None and offset.seconds % 60:  # orjson would cut it to the minute
                    raise ValueError("datetime with an offset in seconds stored; use UTC datetimes")
            elif isinstance(value, date):  # midnight in the session's time zone: ambiguous
                raise ValueError("date stored in a timestamp column; use an aware UTC datetime")


@cache
def unnested(table: Table, names: tuple[str, ...]) -> Select[Any]:
    """``SELECT ... FROM ROWS FROM (json_to_recordset(:rows) AS (<name> <type>, ...),
    unnest(string_to_array(:j0, E'\\n', 'NULL')), ...) AS r(...)``: the rows of :func:`params`,
    typed as the table's columns."""
    scalars, apart = layout(table, names)
    functions: list[Any] = []
    if scalars:
        document = func.json_to_recordset(cast(bindparam("rows", type_=Text), JSON))
        functions.append(defined(document, *(column(name, table.c[name].type) for name in scalars)))
    functions.extend(
        func.unnest(func.string_to_array(bindparam(f"j{n}", type_=Text), _NEWLINE, _NULL))
        for n in range(len(apart))
    )
    rows = rows_from(*functions).table_valued(*(column(name) for name in (*scalars, *apart)))
    rows = rows.render_derived(name="r")
    return select(
        *(
            cast(rows.c[name], table.c[name].type).label(name) if name in apart else rows.c[name]
            for name in names
        )
    )


# The element ``string_to_array`` reads as NULL: no JSON text is the bare word NULL.
NULL_TEXT = "NULL"
_NEWLINE: Any = literal_column("E'\\n'")
_NULL: Any = literal_column("'NULL'")


@cache
def _insert(table: Table, names: tuple[str, ...]) -> Any:
    return insert(table).from_select(list(names), unnested(table, names))


@cache
def _update(table: Table, key: str, names: tuple[str, ...]) -> Update:
    rows = unnested(table, names).subquery("v")
    return (
        update(table)
        .where(table.c[key] == rows.c[key])
        .values({name: rows.c[name] for name in names if name != key})
    )


def params(table: Table, names: Sequence[str], rows: Sequence[Row]) -> dict[str, str] | None:
    """The rows as the parameters of :func:`unnested`; None when they cannot travel that way
    (a scalar Postgres's JSON functions would refuse, :func:`refused`): such rows go the
    ``executemany`` way instead."""
    scalars, apart = layout(table, tuple(names))
    _check(table, tuple(names), rows)
    values: dict[str, str] = {}
    if scalars:
        # The document's keys name the record's columns: rows with no JSON column go as they
        # are, the others as copies without their JSON values (copy and delete: several
        # times cheaper than picking the other keys, for rows of a dozen columns).
        picked: Sequence[Row] = rows if not apart else [_without(row, apart) for row in rows]
        document = dumps(picked)
        if refused(document):
            return None
        values["rows"] = document
    for n, name in enumerate(apart):
        as_null = table.c[name].type.none_as_null  # type: ignore[attr-defined]
        texts = (NULL_TEXT if as_null and row[name] is None else dumps(row[name]) for row in rows)
        values[f"j{n}"] = "\n".join(texts)  # both encoders escape newlines inside a text
    return values


def _without(row: Row, names: tuple[str, ...]) -> Row:
    copy = dict(row)
    for name in names:
        del copy[name]
    return copy


def dumps(value: Any) -> str:
    """One JSON document (datetimes as ISO text with their offset; in a JSON value a naive one
    is taken as UTC, timestamp columns refuse it: :func:`params`);
    check it with :func:`refused` before handing it to Postgres's JSON functions."""
    if _orjson is not None:
        try:  # datetimes in C: a Python callback cost ~1 µs each, several a row
            return _orjson.dumps(value, option=_orjson.OPT_NAIVE_UTC).decode()
        except TypeError:  # orjson.JSONEncodeError: what only json.dumps writes (or refuses)
            pass
    return json.dumps(value, default=_encode)


# What Postgres's JSON functions refuse in a document a ``json`` column would store as it is:
# the escape \u0000, and lone UTF-16 surrogates (``json.dumps`` writes one as \udXXX; a valid
# pair, an emoji say, is fine). An escaped backslash before such text only makes a false
# positive: the rows then take the slower path, never a failing one.
_REFUSED = re.compile(
    r"\\u0000|\\ud[89ab][0-9a-f]{2}(?!\\ud[c-f][0-9a-f]{2})|(?<!\\ud[89ab][0-9a-f]{2})\\ud[c-f][0-9a-f]{2}"
)


def refused(document: str) -> bool:
    """Whether Postgres's JSON functions would refuse this :func:`dumps` output."""
    # One scan for any escape first: documents almost never hold one (orjson escapes only
    # control characters), and the regex costs several scans of its own.
    return "\\u" in document and _REFUSED.search(document) is not None


class LastFormatted:
    """Formats datetimes, remembering the last one: a batch's rows share one ``now``. The memo
    is rebound as one tuple, so threads never see a datetime paired with another's text."""

    def __init__(self, format_: Callable[[datetime], str]) -> None:
        self._format = format_
        self._last: tuple[datetime | None, str] = (None, "")

    def __call__(self, value: datetime) -> str:
        last = self._last
        if last[0] is value:
            return last[1]
        text = self._format(value)
        self._last = (value, text)
        return text


def _iso(value: datetime) -> str:
    """As orjson writes a datetime: ISO text with the offset; naive ones taken as UTC."""
    return (value if value.tzinfo is not None else value.replace(tzinfo=UTC)).isoformat()


def _encode(value: Any) -> str:
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, date):  # as orjson writes one
        return value.isoformat()
    raise TypeError(f"cannot store {type(value).__name__} in a bulk write")
