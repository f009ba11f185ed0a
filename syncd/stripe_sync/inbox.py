"""The durable inbox of Stripe events.

An event is stored exactly as received, keyed by its id, before anything is applied:
a duplicate delivery (or the same event seen again through the Events API) is a no-op,
and a crash after the 2xx loses nothing because applying happens off the request path.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from ..models import InboxEvent, utcnow
from ..pgarray import plain_array, text_array, ts_array
from .normalize import loads_stripe

# Event types that can change what a company is entitled to, or the catalog mirror.
RELEVANT_PREFIXES = (
    "customer.",
    "product.",
    "price.",
    "plan.",
    "invoice.",
    "subscription_schedule.",
    "billing.meter.",
    "entitlements.",
    "test_helpers.test_clock.",
)


@dataclass(frozen=True, slots=True)
class StoredEvent:
    event_id: str
    event_type: str
    inserted: bool  # False: we had it already (duplicate delivery)
    status: str


class MalformedEvent(ValueError):
    """The payload is not a Stripe event object."""


def parse_event(raw: bytes) -> dict[str, Any]:
    try:
        # Stripe sends UTF-8 and the payload is stored as UTF-8 text: json.loads(bytes) would
        # also take UTF-16/32, which could then not be stored. orjson where installed.
        event = loads_stripe(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedEvent(f"body is not JSON: {exc}") from exc
    except RecursionError as exc:  # nested deeper than either parser goes (orjson: 1,024)
        raise MalformedEvent("body is nested too deeply") from exc
    if not isinstance(event, dict) or event.get("object") != "event":
        raise MalformedEvent("body is not a Stripe event object")
    event_id, event_type, version = event.get("id"), event.get("type"), event.get("api_version")
    if not isinstance(event_id, str) or not event_id or not isinstance(event_type, str) or not event_type:
        raise MalformedEvent("event has no id or type")
    # The inbox's columns: anything longer would fail at the insert, as a server error.
    if len(event_id) > 255 or len(event_type) > 128:
        raise MalformedEvent("event id or type too long")
    if version is not None and (not isinstance(version, str) or len(version) > 64):
        raise MalformedEvent("event.api_version is not a Stripe API version")
    if not all(_storable(text) for text in (event_id, event_type, version or "")):
        raise MalformedEvent("event id, type or api_version holds a NUL character or a lone surrogate")
    created = event.get("created")
    # Stored as an integer column: anything else would fail later, as a server error.
    if created is not None and (type(created) is not int or not 0 <= created < 2**63):
        raise MalformedEvent("event.created is not a Unix timestamp")
    return event


def is_relevant(event_type: str) -> bool:
    return event_type.startswith(RELEVANT_PREFIXES)


def inbox_row(
    raw: bytes, event: dict[str, Any], *, source: str = "webhook", received_at: datetime | None = None
) -> dict[str, Any]:
    """The ``inbox_event`` row for a parsed event (what :func:`store_event` inserts)."""
    data = event.get("data") if isinstance(event.get("data"), dict) else {}
    obj = data.get("object") if isinstance(data, dict) else None
    return {
        "event_id": event["id"],
        "event_type": event["type"],
        "api_version": event.get("api_version"),
        "livemode": bool(event.get("livemode")),
        "object_id": _object_id(obj),
        "stripe_created": int(event.get("created") or 0),
        "payload": raw.decode("utf-8"),
        "source": source,
        "status": "pending" if is_relevant(event["type"]) else "ignored",
        "attempts": 0,
        "received_at": received_at or utcnow(),
    }


def _object_id(obj: Any) -> str | None:
    ident = obj.get("id") if isinstance(obj, dict) else None
    return ident if isinstance(ident, str) and len(ident) <= 255 and _storable(ident) else None


def _storable(text: str) -> bool:
    """Whether a text column can hold it: Postgres refuses NUL, and a lone surrogate (which
    ``json`` decodes from an escape such as ``\\ud800``) is not UTF-8. Either would fail the
    insert on every delivery, as a server error Stripe retries for days."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def store_event(
    conn: Connection, raw: bytes, event: dict[str, Any], *, source: str = "webhook"
) -> StoredEvent:
    """Insert the event unless its id is already stored. Runs inside the caller's transaction."""
    values = inbox_row(raw, event, source=source)
    table = InboxEvent.__table__  # type: ignore[attr-defined]
    dialect = conn.dialect.name
    insert = pg_insert(table) if dialect == "postgresql" else sqlite_insert(table)
    statement = insert.values(**values).on_conflict_do_nothing(index_elements=["event_id"])
    # RETURNING tells us reliably, on both backends, whether this delivery was the first.
    inserted = conn.execute(statement.returning(table.c.event_id)).first() is not None
    return _stored(values, inserted)


def store_rows(conn: Connection, rows: Sequence[dict[str, Any]]) -> list[StoredEvent]:
    """Insert many :func:`inbox_row` rows with one statement, in the caller's transaction; one
    result per row, in order. A repeated id (already stored, or earlier in ``rows``) is a
    duplicate: only the first occurrence can be inserted."""
    first: dict[str, dict[str, Any]] = {}
    for row in rows:
        first.setdefault(row["event_id"], row)
    # Sorted ids: concurrent inserters (workers, replicas) take the key locks in one order.
    unique = [first[event_id] for event_id in sorted(first)]
    inserted = _insert_many(conn, unique) if unique else set()
    results = []
    for row in rows:
        fresh = row["event_id"] in inserted and first[row["event_id"]] is row
        results.append(_stored(row, fresh))
    return results


def _stored(row: dict[str, Any], inserted: bool) -> StoredEvent:
    status = row["status"] if inserted else "duplicate"
    return StoredEvent(row["event_id"], row["event_type"], inserted, status)


# One fixed statement whatever the row count (unnest of one array per column): no per-row SQL
# to build, compile or send.
_PG_INSERT_MANY = text(
    "INSERT INTO inbox_event (event_id, event_type, api_version, livemode, object_id,"
    " stripe_created, payload, source, status, attempts, received_at)"
    " SELECT * FROM unnest(CAST(:event_id AS text[]), CAST(:event_type AS text[]),"
    " CAST(:api_version AS text[]), CAST(:livemode AS boolean[]), CAST(:object_id AS text[]),"
    " CAST(:stripe_created AS bigint[]), CAST(:payload AS text[]), CAST(:source AS text[]),"
    " CAST(:status AS text[]), CAST(:attempts AS integer[]), CAST(:received_at AS timestamptz[]))"
    " ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
)
_PG_TEXT = ("event_id", "event_type", "api_version", "object_id", "payload", "source", "status")
_PG_PLAIN = ("livemode", "stripe_created", "attempts")


def _insert_many(conn: Connection, rows: list[dict[str, Any]]) -> set[str]:
    if conn.dialect.name == "postgresql":
        # Array literals built with joins (:mod:`syncd.pgarray`): psycopg dumps a list element by
        # element in Python, escaping each quote of a payload with a regex substitution, which
        # was most of a webhook's CPU in the serving process.
        params = {column: text_array([row[column] for row in rows]) for column in _PG_TEXT}
        params.update({column: plain_array([row[column] for row in rows]) for column in _PG_PLAIN})
        params["received_at"] = ts_array([row["received_at"].astimezone(UTC) for row in rows])
        return set(conn.execute(_PG_INSERT_MANY, params).scalars())
    table = InboxEvent.__table__  # type: ignore[attr-defined]
    inserted: set[str] = set()
    for start in range(0, len(rows), _SQLITE_ROWS):  # SQLite caps bound parameters per statement
        chunk = rows[start : start + _SQLITE_ROWS]
        statement = sqlite_insert(table).values(chunk).on_conflict_do_nothing(index_elements=["event_id"])
        inserted.update(conn.execute(statement.returning(table.c.event_id)).scalars())
    return inserted


_SQLITE_ROWS = 500
