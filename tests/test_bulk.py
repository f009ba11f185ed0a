"""Set-based writes (one text array per column) store exactly what executemany stores."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert, select
from sqlmodel import Session

from syncd import bulk, migrate
from syncd.db import make_engine
from syncd.models import AuditLog, Company, CompanyPlan, StripeCustomer
from syncd.models.base import new_id

T = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def _table(model: Any) -> Any:
    return model.__table__


@pytest.mark.postgres
def test_insert_and_update_rows_match_executemany(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    migrate.upgrade(engine)
    audit = _table(AuditLog)
    rows = [
        {
            "actor_type": "stripe",
            "actor": None,
            "action": f"probe.{n}",
            "entity_type": "company",
            "entity_id": f"comp_{n}",
            "before": None if n % 2 else {"name": 'O\'Brien "quoted"', "n": n, "nested": [1, None]},
            "after": {"when": "2026-11-21T12:00:00Z", "flag": True},
            "note": "comma, brace { and quote '",
            "created_at": T + timedelta(microseconds=n),
        }
        for n in range(4)
    ]
    with Session(engine) as session:
        bulk.insert_rows(session, audit, rows[:2])
        session.execute(insert(audit), rows[2:])  # the executemany way, for comparison
        session.commit()
        stored = session.execute(select(audit).order_by(audit.c.action)).mappings().all()
    for row, got in zip(rows, stored, strict=True):
        assert {k: got[k] for k in row} == row
    assert stored[1]["before"] is None and stored[3]["before"] is None  # JSON null both ways

    companies = [Company(name=f"C{n}") for n in range(3)]
    customers = _table(StripeCustomer)
    with Session(engine, expire_on_commit=False) as session:
        session.add_all(companies)
        session.flush()
        bulk.insert_rows(
            session,
            customers,
            [
                {
                    "stripe_id": f"cus_{n}",
                    "livemode": n == 1,
                    "data": {"id": f"cus_{n}"},
                    "deleted": False,
                    "source_created": 100 + n,
                    "source_id": "evt_probe",
                    "synced_at": T,
                }
                for n in range(3)
            ],
        )
        bulk.update_rows(
            session,
            customers,
            "stripe_id",
            [{"stripe_id": f"cus_{n}", "company_id": companies[n].id, "deleted": n == 2} for n in range(3)],
        )
        session.commit()
        got = session.execute(select(customers).order_by(customers.c.stripe_id)).mappings().all()
    assert [r["company_id"] for r in got] == [c.id for c in companies]
    assert [r["livemode"] for r in got] == [False, True, False]
    assert [r["deleted"] for r in got] == [False, False, True]
    assert [r["source_created"] for r in got] == [100, 101, 102]
    assert all(r["synced_at"] == T for r in got)
    engine.dispose()


@pytest.mark.postgres
def test_naive_datetimes_are_refused(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    migrate.upgrade(engine)
    with Session(engine) as session:
        company = Company(name="N")
        session.add(company)
        session.flush()
        row = {
            "id": new_id("cpl"),
            "company_id": company.id,
            "plan_id": None,
            "created_at": T.replace(tzinfo=None),
        }
        with pytest.raises(ValueError, match="naive datetime"):
            bulk.insert_rows(session, _table(CompanyPlan), [row])
    engine.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize(
    "note",
    ["a\x00b", "lone \ud800 high", "lone \udc00 low", "emoji \U0001f600 pair"],
    ids=["nul", "lone-high", "lone-low", "emoji"],
)
def test_rows_json_to_recordset_cannot_carry_are_still_written(postgres_url: str, note: str) -> None:
    """A NUL or a lone surrogate in a JSON value (valid JSON, stored fine by a ``json``
    column) makes ``json_to_recordset`` fail: such rows take the one-row-per-execution way.
    An emoji (a valid surrogate pair once escaped) goes the bulk way."""
    from syncd.stripe_sync import mirror_bulk

    assert bulk.refused(json.dumps(note)) == ("emoji" not in note)
    engine = make_engine(postgres_url)
    migrate.upgrade(engine)
    odd = {"id": "cus_nul", "object": "customer", "metadata": {"note": note}}
    with Session(engine) as session:
        bulk.insert_rows(
            session,
            _table(AuditLog),
            [
                {
                    "actor_type": "stripe",
                    "action": "nul",
                    "entity_type": "company",
                    "after": odd,
                    "created_at": T,
                }
            ],
        )
        state = mirror_bulk.new_state("customer", odd, created=1, source_id="evt_nul", previous=None)
        assert mirror_bulk.upsert(session, "customer", [state]) == 1
        session.commit()
        after = session.execute(select(_table(AuditLog).c.after).where(_table(AuditLog).c.action == "nul"))
        assert after.scalar_one() == odd
        stored = mirror_bulk.load(session, "customer", ["cus_nul"])["cus_nul"]
        assert stored.data["metadata"]["note"] == note
    engine.dispose()


DOCUMENT = [
    {
        "at": T,
        "text": "naïve café \U0001f600",
        "big": 2**70,  # beyond orjson's 64 bits
        "nested": {"k": [1, 2.5, None, True]},
    },
    {1: "an int key", "quote": 'a "b" \\ c'},
]


def _expected(value: Any) -> Any:
    return json.loads(json.dumps(value, default=lambda d: d.astimezone(UTC).isoformat()))


@pytest.mark.parametrize("encoder", ["orjson", "json"])
def test_documents_read_back_the_same_whichever_encoder_writes_them(
    encoder: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if encoder == "json":
        monkeypatch.setattr(bulk, "_orjson", None)
    else:
        assert bulk._orjson is not None  # the `fast` extra, installed by `make test-deps`
    assert json.loads(bulk.dumps(DOCUMENT)) == _expected(DOCUMENT)
    assert json.loads(bulk.dumps(DOCUMENT[:1]))[0]["at"] == "2026-11-21T12:00:00+00:00"
    # What Postgres's JSON functions refuse is still flagged, whoever encoded it.
    assert bulk.refused(bulk.dumps(["a\x00b"])) and bulk.refused(bulk.dumps(["lone \ud800"]))
    assert not bulk.refused(bulk.dumps(["emoji \U0001f600"]))
    with pytest.raises(ValueError, match="naive datetime"):
        bulk.dumps([T.replace(tzinfo=None)])
