"""Plan credits over the database: granted on joining, burned by usage, reset with rollover at
the grant's expiry by the boundary job (freezegun)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from freezegun import freeze_time
from freezegun.api import FrozenDateTimeFactory
from sqlmodel import Session, col, select

from syncd import migrate
from syncd.boundaries.apply import apply_due
from syncd.catalog import apply_catalog, loads
from syncd.db import make_engine, session_scope
from syncd.models import CreditGrant, CreditType
from syncd.services import companies
from syncd.services.credits import consume_credits
from syncd.state import EntitlementStore

CATALOG = """
[settings]
initial_plan = "base"

[[credit_types]]
key = "tokens"
name = "Tokens"

[[features]]
key = "assistant"
name = "Assistant"
type = "event"
event = "ask"

[[plans]]
key = "base"
name = "Base"
type = "plan"

[plans.entitlements]
assistant = { type = "credit", credit = "tokens", rate = 1.0 }

[[plans.credit_grants]]
credit = "tokens"
amount = 100
reset_type = "plan_period"
reset_cadence = "monthly"
rollover_percentage = 50
"""
JOINED = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def store(database_url: str) -> Iterator[tuple[EntitlementStore, FrozenDateTimeFactory]]:
    with freeze_time(JOINED) as clock:
        engine = make_engine(database_url)
        migrate.upgrade(engine)
        with session_scope(engine) as session:
            apply_catalog(session, loads(CATALOG))
        store = EntitlementStore(engine)
        store.load()
        yield store, clock
        engine.dispose()


def _remaining(store: EntitlementStore) -> float | None:
    ent = store.check({"slug": "acme"}, None, "assistant").entitlement
    assert ent is not None
    return ent.credit_remaining


def test_plan_credits_reset_monthly_with_rollover(
    store: tuple[EntitlementStore, FrozenDateTimeFactory],
) -> None:
    st, clock = store
    engine = st._engine
    with Session(engine) as session:
        company, _ = companies.upsert_company(session, keys={"slug": "acme"})  # joins Base: 100 tokens
        session.commit()
        cid = company.id
    st.follow()
    assert _remaining(st) == 100
    with Session(engine) as session:
        credit = session.exec(select(CreditType)).one()
        consume_credits(session, cid, credit.id, 40, 1.0, dt.datetime.now(dt.UTC))
        session.commit()
    st.follow()
    assert _remaining(st) == 60
    reset = dt.datetime(2026, 4, 10, 12, 0, tzinfo=dt.UTC)  # a month after joining
    clock.move_to(reset - dt.timedelta(seconds=1))
    assert apply_due(engine, dt.datetime.now(dt.UTC))["credit_grant_expired"] == 0
    clock.move_to(reset)
    assert apply_due(engine, reset)["credit_grant_expired"] == 1
    st.follow()
    assert _remaining(st) == 130  # a fresh 100 plus half of the 60 left
    assert apply_due(engine, reset)["credit_grant_expired"] == 0  # idempotent
    with Session(engine) as session:
        live = session.exec(select(CreditGrant).where(col(CreditGrant.zeroed_at).is_(None))).all()
    assert sorted((g.reason, g.remaining) for g in live) == [("plan", 100.0), ("rollover", 30.0)]
