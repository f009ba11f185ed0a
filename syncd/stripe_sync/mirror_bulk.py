"""Mirror writes for many objects at once: one read and one upsert per kind.

The sweep applies pages of 100 listed objects; building an ORM row per object cost more than
everything else it does. Here a page's current watermarks are read as plain rows
(:class:`State`), each listed object becomes the new state in memory, and the page is written
with one ``INSERT ... ON CONFLICT DO UPDATE`` (Postgres and SQLite alike) whose ``WHERE``
repeats the watermark check in SQL, so a newer snapshot written meanwhile by the webhook
applier is never overwritten.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from sqlalchemy import Table, Text, bindparam, cast, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.types import TypeDecorator
from sqlmodel import Session

from .. import bulk
from ..db import any_of
from ..models import utcnow
from .mirror import MODELS, columns, past_due_since, subscription_columns
from .normalize import JSON, SubscriptionView, loads_stripe, subscription_view


@dataclass(slots=True)
class State:
    """A mirror row's watermark and payload, as :func:`~.mirror.compare` and the mapping read it."""

    stripe_id: str
    data: JSON
    deleted: bool
    source_created: int
    source_id: str
    past_due_since: int | None = None  # subscriptions
    company_id: str | None = None  # customers (never written here: the mapping links it)
    status: str | None = None  # subscriptions
    columns: dict[str, Any] = field(default_factory=dict)
    stored: dict[str, Any] = field(default_factory=dict)  # loaded rows: livemode + ``columns`` as stored
    view: SubscriptionView | None = None  # subscriptions built by new_state: ``data`` parsed


def table_of(kind: str) -> Table:
    table: Table = MODELS[kind].__table__  # type: ignore[attr-defined]
    return table


def load(session: Session, kind: str, ids: Collection[str], *, lock: bool = False) -> dict[str, State]:
    """The stored states of these objects (absent ids: not mirrored yet)."""
    if not ids:
        return {}
    extra = _EXTRA[kind]
    query = _load_query(session.get_bind().dialect.name, kind, lock)
    found: dict[str, State] = {}
    for row in session.execute(query, {"ids": sorted(ids)}).all():
        values = row._mapping
        found[values["stripe_id"]] = State(
            values["stripe_id"],
            values["data"],
            values["deleted"],
            values["source_created"],
            values["source_id"],
            **{name: values[name] for name in extra},
            stored={name: values[name] for name in _DERIVED[kind]},
        )
    return found


_EXTRA = {
    kind: [name for name in ("past_due_since", "company_id", "status") if name in table_of(kind).c]
    for kind in MODELS
}


# What a row holds besides the object itself and its watermark: livemode and the columns
# ``mirror.columns`` derives from the object (``company_id`` and ``past_due_since`` are not
# derived from the object alone).
_NOT_DERIVED = frozenset(
    {
        "stripe_id",
        "data",
        "deleted",
        "source_created",
        "source_id",
        "synced_at",
        "company_id",
        "past_due_since",
    }
)
_DERIVED = {kind: [c.name for c in table_of(kind).c if c.name not in _NOT_DERIVED] for kind in MODELS}


class StripeJSON(TypeDecorator[Any]):
    """A mirrored Stripe object read as text and parsed by :func:`~.normalize.loads_stripe`
    (orjson: a re-sweep reads back every row it compares, ~3 KB a subscription)."""

    impl = Text
    cache_ok = True

    def process_result_value(self, value: Any, dialect: Any) -> Any:
        return None if value is None else loads_stripe(value)


def stripe_data(table: Table) -> Any:
    """``table.data`` as :class:`StripeJSON` reads it, labelled ``data``."""
    return cast(table.c.data, StripeJSON()).label("data")


@cache
def _load_query(dialect: str, kind: str, lock: bool) -> Any:
    table = table_of(kind)
    base = ("stripe_id", "data", "deleted", "source_created", "source_id")
    names = dict.fromkeys([*base, *_EXTRA[kind], *_DERIVED[kind]])
    columns = (stripe_data(table) if name == "data" else table.c[name] for name in names)
    query = select(*columns).where(any_of(dialect, table.c.stripe_id, "ids"))
    return query.with_for_update() if lock and dialect == "postgresql" else query


def new_state(
    kind: str, obj: JSON, *, created: int, source_id: str, previous: State | None, deleted: bool = False
) -> State:
    """The state after storing ``obj`` (the caller has checked the watermark), with the same
    rules as :func:`~.mirror.store`."""
    view = subscription_view(obj) if kind == "subscription" else None
    cols = subscription_columns(view) if view is not None else columns(kind, obj)
    state = State(
        str(obj["id"]),
        obj,
        deleted or bool(obj.get("deleted")),
        max(created, previous.source_created if previous is not None else 0),
        source_id,
        company_id=previous.company_id if previous is not None else None,
        columns=cols,
        view=view,
    )
    if kind == "subscription":
        state.status = cols["status"]
        state.past_due_since = past_due_since(
            state.status,
            previous.status if previous is not None else None,
            previous.past_due_since if previous is not None else None,
            created,
        )
    return state


def upsert(session: Session, kind: str, states: Iterable[State]) -> int:
    """Write the states (one per object: the last wins); returns how many were sent."""
    by_id = {s.stripe_id: s for s in states}
    if not by_id:
        return 0
    now = utcnow()
    rows: list[dict[str, Any]] = []
    for _, state in sorted(by_id.items()):  # primary-key order, as the applier's row locks
        row = {
            "stripe_id": state.stripe_id,
            "livemode": bool(state.data.get("livemode")),
            "data": state.data,
            "deleted": state.deleted,
            "source_created": state.source_created,
            "source_id": state.source_id,
            "synced_at": now,
            **state.columns,
        }
        if kind == "subscription":
            row["past_due_since"] = state.past_due_since
        rows.append(row)
    table = table_of(kind)
    names = tuple(rows[0])
    if not bulk.supported(session):
        session.execute(_on_conflict(sqlite_insert(table), table, names), rows)
        return len(rows)
    document = bulk.params(table, names, rows)
    if document is None:  # a value bulk writes cannot carry: one row per execution
        session.execute(_on_conflict(pg_insert(table), table, names), rows)
    else:  # one statement, the rows as one JSON document
        session.execute(_pg_upsert(table, names), document)
    return len(rows)


def stored_as_listed(kind: str, before: State | None, obj: JSON, created: int) -> bool:
    """Whether the row already holds exactly what storing ``obj`` would write, but for the
    watermark: the same object, livemode, derived columns and past_due start (a row written
    before a column existed, or by older code, is rewritten instead)."""
    if before is None or before.deleted or before.data != obj:
        return False
    if before.stored != {"livemode": bool(obj.get("livemode")), **columns(kind, obj)}:
        return False
    if kind == "subscription":
        since = past_due_since(before.status, before.status, before.past_due_since, created)
        return since == before.past_due_since
    return True


def touch(session: Session, kind: str, ids: Collection[str], *, created: int, source_id: str) -> None:
    """Move the watermark of rows whose stored data already is the listed object: a nightly
    re-sweep of an unchanged account rewrites no JSON (three narrow columns, one statement)."""
    if not ids:
        return
    statement = _touch(session.get_bind().dialect.name, kind)
    session.execute(
        statement, {"ids": sorted(ids), "b_created": created, "b_source_id": source_id, "b_now": utcnow()}
    )


@cache
def _touch(dialect: str, kind: str) -> Any:
    table = table_of(kind)
    return (
        update(table)
        .where(any_of(dialect, table.c.stripe_id, "ids"), table.c.source_created <= bindparam("b_created"))
        .values(
            source_created=bindparam("b_created"),
            source_id=bindparam("b_source_id"),
            synced_at=bindparam("b_now", type_=table.c.synced_at.type),
        )
    )


@cache
def _pg_upsert(table: Table, names: tuple[str, ...]) -> Any:
    return _on_conflict(bulk.upsert(table, names), table, names)


def _on_conflict(insert: Any, table: Table, names: Sequence[str]) -> Any:
    """Overwrite an existing row only with a state at least as new (the watermark, in SQL)."""
    return insert.on_conflict_do_update(
        index_elements=[table.c.stripe_id],
        set_={name: insert.excluded[name] for name in names if name != "stripe_id"},
        where=table.c.source_created <= insert.excluded.source_created,
    )
