"""Usage-only changes: logged as such, upgraded to a full change when more than usage moved,
and followed by the store without losing read-your-writes for checks."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import Session, col, select

from syncd import migrate
from syncd.catalog import apply_catalog, load_catalog
from syncd.db import make_engine, session_scope
from syncd.models import ChangeLog
from syncd.services import companies
from syncd.services.audit import Actor
from syncd.services.changes import USAGE_CHANGED, USAGE_PAYLOAD, entitlements_changed, expand, usage_changed
from syncd.services.metering import TrackInput, track_batches
from syncd.state import EntitlementStore

DEMO = str(Path(__file__).resolve().parents[2] / "config" / "catalog.toml")


@pytest.fixture
def store(database_url: str) -> Iterator[EntitlementStore]:
    engine = make_engine(database_url)
    migrate.upgrade(engine)
    with session_scope(engine) as session:
        apply_catalog(session, load_catalog(DEMO))
        for name in ("a", "b"):
            companies.upsert_company(session, keys={"slug": name}, name=name, actor=Actor("system"))
    store = EntitlementStore(engine)
    store.load()
    yield store
    engine.dispose()


def _rows(store: EntitlementStore) -> list[ChangeLog]:
    with Session(store._engine) as session:
        return list(session.exec(select(ChangeLog).where(col(ChangeLog.id) > 0).order_by(col(ChangeLog.id))))


def _last_payloads(store: EntitlementStore) -> dict[str, dict[str, object]]:
    """Each company's last change, as readers see it (a usage.changed row expanded)."""
    return {
        str(cid): dict(payload)
        for r in _rows(store)
        for _, cid, payload in expand(r.topic, r.company_id, r.payload)
        if cid
    }


def test_usage_only_rows_and_upgrade_to_a_full_change(store: EntitlementStore) -> None:
    a, b = store.resolve_company({"slug": "a"}), store.resolve_company({"slug": "b"})
    assert a and b
    with session_scope(store._engine) as session:
        usage_changed(session, [a, b])
        entitlements_changed(session, [b])  # more than usage moved for b
    payloads = _last_payloads(store)
    assert payloads[a] == USAGE_PAYLOAD
    assert payloads[b] == {}
    # Usage-only companies share one row per transaction, however many there are.
    last = _rows(store)[-2:]
    assert [(r.topic, r.company_id) for r in last] == [("entitlements.changed", b), (USAGE_CHANGED, None)]
    assert last[1].payload == {"company_ids": [a]}


def test_store_follows_usage_without_reloading_definitions(store: EntitlementStore) -> None:
    a = store.resolve_company({"slug": "a"})
    assert a
    now = dt.datetime.now(dt.UTC)
    definition = store.company_definition(a)
    with session_scope(store._engine) as session:
        sub = None if definition is None else definition.subscription
        outcomes = track_batches(
            session,
            [[TrackInput(a, "api-call", 3, now, "k1")], [TrackInput(a, "api-call", 3, now, "k1")]],
            {a: sub},
            now,
        )
    assert [(o.accepted, o.duplicates) for o in outcomes] == [(1, 0), (0, 1)]
    store.follow()
    assert store.company_definition(a) is definition  # the in-memory definition, not reloaded
    entitlement = store.check({"slug": "a"}, None, "api-calls").entitlement
    assert entitlement is not None and entitlement.usage == 3  # a check reloads on demand
    assert store.company_definition(a) is not definition  # reloaded by that check


def test_a_failing_request_in_a_group_fails_alone(store: EntitlementStore) -> None:
    """The group's transaction fails; each request is retried alone: the good one commits."""
    import asyncio

    from syncd.api.group_commit import GroupCommitter, TrackJob

    a = store.resolve_company({"slug": "a"})
    assert a
    now = dt.datetime.now(dt.UTC)
    changes: list[object] = []
    committer = GroupCommitter(store._engine, changes.append)
    good = TrackJob([TrackInput(a, "api-call", 2, now)], {a: None})
    bad = TrackJob([TrackInput(a, "api-call", 2**70, now)], {a: None})  # no integer column holds it

    async def both() -> list[object]:
        return await asyncio.gather(committer.submit(good), committer.submit(bad), return_exceptions=True)

    first, second = asyncio.run(both())
    assert not isinstance(first, BaseException) and first.accepted == 1  # type: ignore[union-attr]
    assert isinstance(second, Exception)
    assert changes  # the committed request was handed to the listeners
    store.follow()
    entitlement = store.check({"slug": "a"}, None, "api-calls").entitlement
    assert entitlement is not None and entitlement.usage == 2


def test_change_log_rows_keep_their_order_and_payloads_even_with_a_nul(store: EntitlementStore) -> None:
    """Postgres writes a transaction's rows as one JSON document, except when a payload holds
    a NUL or a lone surrogate (its JSON functions refuse them): those go as array literals. Both
    paths keep
    the recording order and the exact payloads."""
    from syncd.services.changes import record_event

    a, b = store.resolve_company({"slug": "a"}), store.resolve_company({"slug": "b"})
    assert a and b
    for name in ("plain", "with\x00nul", "lone \ud800 surrogate", "emoji \U0001f600", "two\nlines"):
        with session_scope(store._engine) as session:
            record_event(session, "company.renamed", a, {"name": name, "quote": '"q"\\'})
            record_event(session, "company.renamed", b, {"name": name})
            record_event(session, "catalog.changed", None, {})
        last = _rows(store)[-3:]
        assert [(r.topic, r.company_id) for r in last] == [
            ("company.renamed", a),
            ("company.renamed", b),
            ("catalog.changed", None),
        ]
        assert last[0].payload == {"name": name, "quote": '"q"\\'}
        assert last[0].id < last[1].id < last[2].id
