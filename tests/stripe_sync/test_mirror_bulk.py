"""Page-at-a-time mirror writes: the same watermark rules as the row-at-a-time path, in SQL too."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlmodel import Session

from syncd import migrate
from syncd.models import StripeSubscription, utcnow
from syncd.stripe_sync import mirror_bulk
from syncd.stripe_sync.mapping import MappingContext
from syncd.stripe_sync.normalize import loads_stripe
from syncd.stripe_sync.preload import load_subscriptions
from syncd.stripe_sync.sweep import apply_page
from syncd.stripe_sync.sweep_pool import SweepResult


def sub(sub_id: str, status: str, quantity: int = 1) -> dict[str, object]:
    item = {"id": f"si_{sub_id}", "price": {"id": "price_x", "product": "prod_x"}, "quantity": quantity}
    return {
        "id": sub_id,
        "object": "subscription",
        "customer": "cus_1",
        "status": status,
        "items": {"object": "list", "data": [item], "has_more": False},
    }


def sweep_page(engine: Engine, listed: list[dict[str, object]], created: int) -> SweepResult:
    """One sweep page of subscriptions, committed; returns its tally."""
    result = SweepResult()
    with Session(engine) as session:
        apply_page(
            session,
            None,
            "subscription",
            listed,
            MappingContext(now=utcnow()),
            created=created,
            result=result,
        )
        session.commit()
    return result


def test_upsert_inserts_updates_and_never_overwrites_a_newer_snapshot(database_url: str) -> None:
    engine = create_engine(database_url)
    migrate.upgrade(engine)
    try:
        with Session(engine) as session:
            states = [
                mirror_bulk.new_state(
                    "subscription", sub("sub_a", "active"), created=100, source_id="e1", previous=None
                ),
                mirror_bulk.new_state(
                    "subscription", sub("sub_b", "past_due"), created=100, source_id="e1", previous=None
                ),
            ]
            assert mirror_bulk.upsert(session, "subscription", states) == 2
            session.commit()
        with Session(engine) as session:
            stored = mirror_bulk.load(session, "subscription", ["sub_a", "sub_b", "sub_missing"])
            assert sorted(stored) == ["sub_a", "sub_b"]
            assert stored["sub_b"].past_due_since == 100 and stored["sub_a"].past_due_since is None
            # A newer snapshot for sub_a; an older one (a stale page) for sub_b: only sub_a moves,
            # even though nothing in Python stopped the older write (the SQL guard does).
            newer = mirror_bulk.new_state(
                "subscription",
                sub("sub_a", "active", 5),
                created=200,
                source_id="e2",
                previous=stored["sub_a"],
            )
            older = mirror_bulk.new_state(
                "subscription", sub("sub_b", "active"), created=50, source_id="e0", previous=None
            )
            mirror_bulk.upsert(session, "subscription", [newer, older])
            session.commit()
        with Session(engine) as session:
            a = session.get(StripeSubscription, "sub_a")
            b = session.get(StripeSubscription, "sub_b")
            assert a is not None and b is not None
            assert (a.source_id, a.source_created, a.data["items"]["data"][0]["quantity"]) == ("e2", 200, 5)
            assert (b.source_id, b.status, b.past_due_since) == ("e1", "past_due", 100)
            # Past-due time is kept while it stays past_due, cleared when it recovers.
            still = mirror_bulk.new_state(
                "subscription",
                sub("sub_b", "past_due"),
                created=300,
                source_id="e3",
                previous=mirror_bulk.load(session, "subscription", ["sub_b"])["sub_b"],
            )
            assert still.past_due_since == 100
    finally:
        engine.dispose()


def test_a_resweep_moves_only_the_watermark_of_rows_stored_exactly_as_listed(database_url: str) -> None:
    """Unchanged objects get a narrow UPDATE; an object that differs anywhere (even where
    mapping never looks) is rewritten, so the mirror stays exact."""
    engine = create_engine(database_url)
    migrate.upgrade(engine)
    listed = [sub("sub_a", "active"), sub("sub_b", "active")]
    try:
        sweep_page(engine, listed, 100)
        changed = sub("sub_b", "active")
        changed["metadata"] = {"note": "only the mirror reads this"}
        statements: list[str] = []
        event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
        again = sweep_page(engine, [listed[0], changed], 300)
        assert again.stored == 2 and again.unchanged == 2  # neither changes what mapping reads
        touches = [s for s in statements if s.startswith("UPDATE stripe_subscription SET source_created")]
        assert len(touches) == 1  # sub_a: the narrow update, in one statement
        with Session(engine) as session:
            a = session.get(StripeSubscription, "sub_a")
            b = session.get(StripeSubscription, "sub_b")
            assert a is not None and b is not None
            assert (a.source_created, a.source_id) == (300, "sweep:300")  # watermark moved
            assert a.data == listed[0]
            assert (b.source_created, b.data["metadata"]) == (300, {"note": "only the mirror reads this"})
        # An older listing never moves a watermark back.
        sweep_page(engine, listed, 200)
        with Session(engine) as session:
            a = session.get(StripeSubscription, "sub_a")
            assert a is not None and a.source_created == 300
    finally:
        engine.dispose()


def test_a_resweep_rewrites_a_row_whose_derived_columns_are_stale(database_url: str) -> None:
    """Same object, but the row's columns are not what storing it would write (written before
    a column existed, or by older code): the full write fixes them, not the narrow one."""
    from sqlalchemy import update

    engine = create_engine(database_url)
    migrate.upgrade(engine)
    listed = [sub("sub_p", "past_due")]
    try:
        sweep_page(engine, listed, 100)
        table = mirror_bulk.table_of("subscription")
        with Session(engine) as session:
            session.execute(update(table).values(past_due_since=None, customer_id=None))
            session.commit()
        sweep_page(engine, listed, 300)
        with Session(engine) as session:
            row = session.get(StripeSubscription, "sub_p")
            assert row is not None
            assert (row.customer_id, row.past_due_since, row.source_created) == ("cus_1", 300, 300)
    finally:
        engine.dispose()


def test_subscriptions_just_written_are_not_read_back(database_url: str) -> None:
    """The mapping's subscription views: those the page has just stored come from memory
    (their data neither read back nor parsed again), the customer's others from the table."""
    engine = create_engine(database_url)
    migrate.upgrade(engine)
    try:
        sweep_page(engine, [sub("sub_old", "active", quantity=2)], created=100)
        with Session(engine) as session:
            fresh = mirror_bulk.new_state(
                "subscription", sub("sub_new", "past_due"), created=200, source_id="e2", previous=None
            )
            mirror_bulk.upsert(session, "subscription", [fresh])
            from_memory = load_subscriptions(session, ["cus_1", "cus_none"], [fresh])
            from_table = load_subscriptions(session, ["cus_1", "cus_none"])
        assert from_memory == from_table
        assert from_memory["cus_none"] == []
        views = {view.id: (view, since) for view, since in from_memory["cus_1"]}
        assert views["sub_new"][0] is fresh.view  # not parsed again
        assert views["sub_new"][1] == 200 and views["sub_old"][0].items[0].quantity == 2
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "document",
    [
        '{"id": "sub_1", "quantity": 3, "amount": 9223372036854775807, "rate": 12.5, "x": null}',
        '{"name": "Acme \\u00e9 \\ud83d\\ude80", "items": {"data": [], "has_more": false}}',
        '{"odd": NaN}',  # not JSON, but what json reads: left to it
    ],
)
def test_loads_stripe_reads_stored_objects_as_json_does(document: str) -> None:
    expected = json.dumps(json.loads(document))
    assert json.dumps(loads_stripe(document)) == expected
    assert json.dumps(loads_stripe(document.encode())) == expected


def test_loads_stripe_refuses_broken_text() -> None:
    with pytest.raises(json.JSONDecodeError):
        loads_stripe('{"id": ')


def test_mirrored_objects_read_back_exactly(database_url: str) -> None:
    """Rows are read as text and parsed in Python (``StripeJSON``): the same object comes back,
    Unicode, nesting and 64-bit integers included, from the re-sweep's load and the mapping's."""
    engine = create_engine(database_url)
    migrate.upgrade(engine)
    try:
        listed = sub("sub_exact", "active", quantity=2)
        listed["metadata"] = {"note": 'ünïcode 🚀 "quoted"\nline'}
        listed["billing_cycle_anchor"] = 2**63 - 1
        sweep_page(engine, [listed], created=100)
        with Session(engine) as session:
            loaded = mirror_bulk.load(session, "subscription", ["sub_exact"])
            [(view, _)] = load_subscriptions(session, ["cus_1"])["cus_1"]
        assert loaded["sub_exact"].data == listed
        assert view.id == "sub_exact" and view.items[0].quantity == 2
    finally:
        engine.dispose()
