"""The one seam between domain mutations and everything that follows them.

Every service that can change what a company is entitled to calls
:func:`entitlements_changed` inside its transaction; services that do something an outside
observer cares about (a plan change, an override created...) call :func:`record_event`.
Both are written to the ``change_log`` table by a ``before_commit`` hook, in the same
transaction, so the record exists exactly when the change does.

Ids in ``change_log`` follow commit order: on Postgres the hook takes a transaction-scoped
advisory lock right before inserting, and holds it through the commit, so no transaction
can take a later id and commit earlier. A follower that reads ``id > cursor`` therefore
never skips a row (SQLite serialises writers anyway).

The process that made a change also learns about it immediately, without polling: after a
successful commit the owner calls :func:`take_entitlement_changes` (the HTTP API hands the
result to ``app.state.entitlements_listeners``).

``"all"`` means "recompute every company" (a flag's rules changed, a feature was deleted...).
Once ``"all"`` is recorded, later ids are absorbed by it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal, TypeAlias

import structlog
from sqlalchemy import Table, event, insert, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Session

from ..bulk import dumps
from ..models import ChangeLog, utcnow
from ..pgarray import text_array

log = structlog.get_logger(__name__)

ALL: Literal["all"] = "all"
Changed: TypeAlias = frozenset[str] | Literal["all"]
ENTITLEMENTS_CHANGED = "entitlements.changed"
CATALOG_CHANGED = "catalog.changed"

_KEY = "syncd.entitlements_changed"  # what this transaction changed (read after commit)
_EVENTS = "syncd.pending_events"  # domain events not yet written to the log
_LOGGED = "syncd.logged"  # entitlement changes already written to the log
_USAGE_ONLY = "syncd.usage_only"  # companies whose only change is usage (counters, events)
_WROTE = "syncd.change_log_written"  # this transaction inserted change_log rows
# Companies whose only change is tracked usage are logged as ONE ``usage.changed`` row per
# transaction, ``{"company_ids": [...]}``: ingest commits hundreds of companies a second, and
# one row per company made every follower re-read them all. Readers expand it with
# :func:`expand` into usage-only ``entitlements.changed`` changes, whose payload tells them the
# company's plans, subscription and entitlement definitions are unchanged (only usage moved).
USAGE_CHANGED = "usage.changed"
USAGE_PAYLOAD: dict[str, Any] = {"usage": True}
_CHANGE_LOG: Table = ChangeLog.__table__  # type: ignore[attr-defined]
# Arbitrary constant naming the change_log commit-order lock among advisory locks.
CHANGE_LOG_LOCK = 0x5C0D_C4A6


def entitlements_changed(session: Session, company_ids: Iterable[str] | Literal["all"]) -> None:
    """Record that these companies' entitlements (or every company's) may have changed."""
    current = session.info.get(_KEY)
    if current == ALL:
        return
    if company_ids == ALL:
        session.info[_KEY] = ALL
        return
    ids: set[str] = current if isinstance(current, set) else set()
    company_ids = set(company_ids)
    ids.update(company_ids)
    session.info[_KEY] = ids
    usage_only: set[str] | None = session.info.get(_USAGE_ONLY)
    if usage_only and company_ids & usage_only:
        # More than usage changed after all: log the company again, as a full change.
        usage_only.difference_update(company_ids)
        logged = session.info.get(_LOGGED)
        if isinstance(logged, set):
            logged.difference_update(company_ids)


def usage_changed(session: Session, company_ids: Iterable[str]) -> None:
    """Record that only these companies' usage changed (tracked events): an entitlements
    change whose log row says so, so followers needn't re-read the companies' definitions."""
    current = session.info.get(_KEY)
    if current == ALL:
        return
    ids: set[str] = current if isinstance(current, set) else set()
    fresh = set(company_ids) - ids  # a company changed otherwise already stays a full change
    ids.update(fresh)
    session.info[_KEY] = ids
    session.info.setdefault(_USAGE_ONLY, set()).update(fresh)


def record_event(session: Session, topic: str, company_id: str | None, payload: dict[str, Any]) -> None:
    """Record a domain event (e.g. ``company.plan_changed``) for adapters to publish."""
    session.info.setdefault(_EVENTS, []).append((topic, company_id, payload))


def catalog_changed(session: Session) -> None:
    """Record that plans or plan entitlements changed (engines reload the catalog; the
    companies whose entitlements changed are recorded separately)."""
    events = session.info.setdefault(_EVENTS, [])
    if not any(topic == CATALOG_CHANGED for topic, _, _ in events):
        events.append((CATALOG_CHANGED, None, {}))


def peek_entitlement_changes(session: Session) -> Changed | None:
    """What has been recorded so far (``None``: nothing)."""
    current = session.info.get(_KEY)
    if current == ALL:
        return ALL
    if isinstance(current, set) and current:
        return frozenset(current)
    return None


def usage_only_changes(session: Session) -> frozenset[str]:
    """The companies recorded so far whose only change is usage (call before ``take``)."""
    return frozenset(session.info.get(_USAGE_ONLY, ()))


def take_entitlement_changes(session: Session) -> Changed | None:
    """Return and clear the record; call after commit."""
    changed = peek_entitlement_changes(session)
    session.info.pop(_KEY, None)
    session.info.pop(_LOGGED, None)
    session.info.pop(_USAGE_ONLY, None)
    return changed


def _log_rows(session: OrmSession) -> list[dict[str, Any]]:
    rows = [
        {"topic": topic, "company_id": company_id, "payload": payload}
        for topic, company_id, payload in session.info.pop(_EVENTS, [])
    ]
    changed = peek_entitlement_changes(session)  # type: ignore[arg-type]
    logged: set[str] | Literal["all"] = session.info.get(_LOGGED, set())
    if changed == ALL and logged != ALL:
        rows.append({"topic": ENTITLEMENTS_CHANGED, "company_id": None, "payload": {}})
        session.info[_LOGGED] = ALL
    elif isinstance(changed, frozenset) and isinstance(logged, set):
        fresh = sorted(changed - logged)
        usage_only: set[str] = session.info.get(_USAGE_ONLY, set())
        rows.extend(
            {"topic": ENTITLEMENTS_CHANGED, "company_id": cid, "payload": {}}
            for cid in fresh
            if cid not in usage_only
        )
        usage = [cid for cid in fresh if cid in usage_only]
        if usage:
            rows.append({"topic": USAGE_CHANGED, "company_id": None, "payload": {"company_ids": usage}})
        session.info[_LOGGED] = logged | set(fresh)
    return rows


def expand(
    topic: str, company_id: str | None, payload: Mapping[str, Any] | None
) -> list[tuple[str, str | None, Mapping[str, Any]]]:
    """One change-log row as the changes it stands for: a ``usage.changed`` row becomes a
    usage-only ``entitlements.changed`` change per company; any other row is itself."""
    if topic == USAGE_CHANGED:
        ids = (payload or {}).get("company_ids") or []
        return [(ENTITLEMENTS_CHANGED, str(cid), USAGE_PAYLOAD) for cid in ids]
    return [(topic, company_id, payload or {})]


@event.listens_for(OrmSession, "before_commit")
def _write_change_log(session: OrmSession) -> None:
    write_change_log(session)


def write_change_log(session: OrmSession) -> None:
    """Write the changes recorded so far (commit does it for whatever is left): called early,
    inside a :func:`~syncd.db.pipeline`, it costs no round trip of its own."""
    rows = _log_rows(session)
    if not rows:
        return
    session.info[_WROTE] = True
    now = utcnow()
    if session.get_bind().dialect.name == "postgresql":
        _insert_pg(session, rows, now)
        return
    # A Core multi-row insert on the table (not the ORM bulk path, which costs ~30 µs a row):
    # a publish can log 100k companies in one transaction, a group commit hundreds.
    session.execute(insert(_CHANGE_LOG), [{**row, "created_at": now} for row in rows])


# Postgres: one statement whatever the number of rows: topics and company ids as array
# literals, the payloads as JSON texts joined by newlines (none contains one raw), each parsed
# once, by the column's input; WITH ORDINALITY keeps the rows' order, hence their ids' order.
# The same statement takes the change-log lock (ids must be drawn in commit order): ids are
# drawn for the join's output rows, and the join has no row before it has read the lock's.
# It also queues the NOTIFY that wakes publish pumps in every process (sent at commit, once
# per transaction however many inserts queued it).
_PG_INSERT = text(
    "WITH serialized AS MATERIALIZED (SELECT pg_advisory_xact_lock(:k), pg_notify('syncd_changes', ''))"
    " INSERT INTO change_log (topic, company_id, payload, created_at)"
    " SELECT t, c, CAST(p AS json), :now FROM serialized,"
    " unnest(CAST(:t AS varchar[]), CAST(:c AS varchar[]), string_to_array(:p, E'\\n'))"
    " WITH ORDINALITY AS x(t, c, p, n) ORDER BY n"
)


def _insert_pg(session: OrmSession, rows: list[dict[str, Any]], now: Any) -> None:
    session.execute(
        _PG_INSERT,
        {
            "now": now,
            "k": CHANGE_LOG_LOCK,
            "t": text_array(r["topic"] for r in rows),
            "c": text_array(r["company_id"] for r in rows),
            "p": "\n".join(dumps(r["payload"]) for r in rows),  # both encoders escape newlines
        },
    )


@event.listens_for(OrmSession, "after_rollback")
def _forget(session: OrmSession) -> None:
    for key in (_KEY, _EVENTS, _LOGGED, _USAGE_ONLY, _WROTE):
        session.info.pop(key, None)


# -- waking the publish pump --------------------------------------------------------------------
# Postgres: the insert's NOTIFY on CHANGES_CHANNEL reaches every process (``LISTEN``).
# SQLite, where one process does all writing: the commit itself calls the engine's watchers.
CHANGES_CHANNEL = "syncd_changes"  # spelled out in the NOTIFY above and in each LISTEN
_watchers: dict[int, list[Callable[[], None]]] = {}


def watch_commits(engine: Engine, callback: Callable[[], None]) -> Callable[[], None]:
    """Call ``callback`` (quick) after each commit in this process, through ``engine`` itself
    (not a copy made by ``execution_options``), that wrote change-log rows; returns the
    function that stops it. Commits of other processes (the CLI) are not seen."""
    _watchers.setdefault(id(engine), []).append(callback)

    def unwatch() -> None:
        callbacks = _watchers.get(id(engine), [])
        if callback in callbacks:
            callbacks.remove(callback)
        if not callbacks:
            _watchers.pop(id(engine), None)

    return unwatch


@event.listens_for(OrmSession, "after_commit")
def _announce(session: OrmSession) -> None:
    if not session.info.pop(_WROTE, False) or not _watchers:
        return
    bind = session.get_bind()
    for callback in list(_watchers.get(id(bind.engine), ())):
        try:
            callback()
        except Exception:  # the data is committed: a failed wake-up only waits for the poll
            log.exception("change_log_watcher_failed")


def checkpoint(session: Session) -> tuple[Any, list[Any]]:
    """What has been recorded so far, to :func:`restore` after rolling back a savepoint."""
    current = session.info.get(_KEY)
    return (set(current) if isinstance(current, set) else current), list(session.info.get(_EVENTS, []))


def restore(session: Session, token: tuple[Any, list[Any]]) -> None:
    """Forget what was recorded since ``checkpoint`` (the savepoint's work was rolled back)."""
    changed, events = token
    if changed is None:
        session.info.pop(_KEY, None)
    else:
        session.info[_KEY] = changed
    session.info[_EVENTS] = events
