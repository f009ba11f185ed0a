"""Postgres array literals for set-based writes (``unnest(CAST(:x AS varchar[]))``).

Binding a Python list makes psycopg dump the array element by element in Python, which was
the largest single cost of an ingest group commit; one string join plus a server-side cast
is ~20x cheaper. The SQL text never changes, so the statements stay prepared.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable


def text_array(values: Iterable[str | None]) -> str:
    """A Postgres array literal of strings (NULL for None), built with one join."""
    return "{" + ",".join("NULL" if v is None else _quote(v) for v in values) + "}"


def _quote(value: str) -> str:
    if '"' in value or "\\" in value:
        value = value.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + value + '"'


def plain_array(values: Iterable[object]) -> str:
    """Array literal of numbers / booleans (their ``str`` is a valid element)."""
    return "{" + ",".join(map(str, values)) + "}"


def ts_array(values: Iterable[dt.datetime]) -> str:
    # Events of a request share one timestamp: format each distinct one once.
    memo: dict[dt.datetime, str] = {}
    out = []
    for v in values:
        s = memo.get(v)
        if s is None:
            s = memo[v] = '"' + v.isoformat() + '"'
        out.append(s)
    return "{" + ",".join(out) + "}"
