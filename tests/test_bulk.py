"""Set-based writes (one text array per column) store exactly what executemany stores."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import insert, select, text
from sqlmodel import Session

from syncd import bulk, migrate
from syncd.db import make_engine
from syncd.models import AuditLog, Company, StripeCustomer

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
def test_datetimes_are_stored_as_their_instant_and_naive_ones_refused(postgres_url: str) -> None:
    """orjson writes datetimes itself (no Python callback): an aware one keeps its offset, which
    Postgres reads as the same instant whatever the session's time zone; a naive one in a
    timestamp column is refused, as ``UTCDateTime`` refuses it, and so are a date, an offset in
    seconds (orjson would round it) and rows whose keys differ."""
    engine = make_engine(postgres_url)
    migrate.upgrade(engine)
    paris = T.astimezone(ZoneInfo("Europe/Paris"))
    audit = _table(AuditLog)
    rows = [
        {"actor_type": "stripe", "action": f"when.{n}", "entity_type": "company", "created_at": when}
        for n, when in enumerate((T, paris))
    ]
    with Session(engine) as session:
        session.execute(text("SET LOCAL TIME ZONE 'America/New_York'"))
        assert bulk.params(audit, tuple(rows[0]), rows) is not None  # set-based
        bulk.insert_rows(session, audit, rows)
        stored = session.execute(
            select(audit.c.created_at).where(audit.c.action.like("when.%")).order_by(audit.c.action)
        ).scalars()
        assert [when.astimezone(UTC) for when in stored] == [T, T]
        naive = {**rows[0], "action": "naive", "created_at": T.replace(tzinfo=None)}
        with pytest.raises(ValueError, match="naive datetime"):
            bulk.insert_rows(session, audit, [rows[0], naive])
        with pytest.raises(ValueError, match="same keys"):
            bulk.insert_rows(
                session, audit, [rows[0], {k: v for k, v in rows[0].items() if k != "entity_type"}]
            )
        with pytest.raises(ValueError, match="same keys"):
            bulk.insert_rows(session, audit, [rows[0], {**rows[0], "note": "an extra key"}])
        with pytest.raises(ValueError, match="date stored"):
            bulk.insert_rows(session, audit, [{**rows[0], "created_at": T.date()}])
        lmt = datetime(1900, 1, 1, tzinfo=timezone(timedelta(minutes=9, seconds=21)))
        with pytest.raises(ValueError, match="offset in seconds"):
            bulk.insert_rows(session, audit, [{**rows[0], "created_at": lmt}])
        session.rollback()
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
    # Datetimes (in JSON values): ISO text with the offset, naive ones as UTC, dates as ISO,
    # whichever encoder writes them.
    paris = T.astimezone(ZoneInfo("Europe/Paris"))
    assert json.loads(bulk.dumps([T.replace(tzinfo=None), paris, T.date()])) == [
        "2026-11-21T12:00:00+00:00",
        "2026-11-21T13:00:00+01:00",
        "2026-11-21",
    ]


ODD_JSON: list[Any] = [
    {"text": "two\nlines", "nul": "a\x00b", "lone": "lone \ud800", "word": "NULL", "q": 'a "b" \\ c'},
    "NULL",  # a JSON string, not SQL NULL
    None,  # JSON null (the column is not none_as_null)
    [],
    {"nested": {"k": [1, 2.5, None, True]}, "emoji": "\U0001f600", "café": "naïve"},
]


@pytest.mark.postgres
def test_json_columns_travel_apart_and_read_back_exactly(postgres_url: str) -> None:
    """JSON columns go as newline-joined texts beside the document (one parse each on the
    server): newlines, NULs and lone surrogates inside them stay set-based and read back as
    written, and only SQL-level NULL markers become NULL."""
    engine = make_engine(postgres_url)
    migrate.upgrade(engine)
    audit = _table(AuditLog)
    rows = [
        {
            "actor_type": "stripe",
            "action": f"apart.{n}",
            "entity_type": "company",
            "before": value,
            "after": {"n": n, "value": value},
            "created_at": T,
        }
        for n, value in enumerate(ODD_JSON)
    ]
    sent = bulk.params(audit, tuple(rows[0]), rows)
    assert sent is not None and set(sent) == {"rows", "j0", "j1"}  # set-based, two JSON texts
    assert sent["j0"].count("\n") == len(rows) - 1  # the only raw newlines: the separators
    with Session(engine) as session:
        bulk.insert_rows(session, audit, rows)
        session.commit()
        stored = session.execute(
            select(audit.c.before, audit.c.after)
            .where(audit.c.action.like("apart.%"))
            .order_by(audit.c.action)
        ).all()
        nulls = session.execute(
            select(audit.c.action).where(audit.c.action.like("apart.%"), audit.c.before.is_(None))
        ).all()
    assert [tuple(r) for r in stored] == [(v, {"n": n, "value": v}) for n, v in enumerate(ODD_JSON)]
    assert nulls == []  # JSON null, as SQLAlchemy's JSON type binds None, never SQL NULL
    engine.dispose()


@pytest.mark.postgres
def test_id_lists_bind_as_one_array_literal(postgres_url: str) -> None:
    """``one_of``/``any_of`` send a list as one ``varchar[]`` literal (no per-element dumping),
    typed at the bind so that Postgres reads it once; awkward ids match exactly."""
    from sqlalchemy.dialects import postgresql

    from syncd.db import any_of, one_of

    odd = ['q"uote', "back\\slash", "com,ma", "{brace}", "sp ace", "NULL", "", "naïve"]
    engine = make_engine(postgres_url)
    migrate.upgrade(engine)
    customers = _table(StripeCustomer)
    with Session(engine) as session:
        session.execute(
            insert(customers),
            [
                {
                    "stripe_id": i,
                    "livemode": False,
                    "data": {},
                    "deleted": False,
                    "source_created": 0,
                    "source_id": "",
                    "synced_at": T,
                }
                for i in [*odd, "other"]
            ],
        )
        statement = select(customers.c.stripe_id).where(any_of("postgresql", customers.c.stripe_id, "ids"))
        assert "= ANY (%(ids)s::VARCHAR[])" in str(statement.compile(dialect=postgresql.dialect()))
        assert sorted(session.execute(statement, {"ids": odd}).scalars()) == sorted(odd)
        assert list(session.execute(statement, {"ids": []}).scalars()) == []
        chosen = select(customers.c.stripe_id).where(one_of(session, customers.c.stripe_id, odd[:3]))
        assert sorted(session.execute(chosen).scalars()) == sorted(odd[:3])
        session.rollback()
    engine.dispose()


@pytest.mark.parametrize("encoder", ["orjson", "json"])
def test_no_json_text_holds_a_raw_newline_or_is_the_null_marker(
    encoder: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """JSON column values travel as texts joined by newlines, ``NULL`` marking SQL NULL: a raw
    newline inside one text would shift every later row, so no encoder may write one."""
    if encoder == "json":
        monkeypatch.setattr(bulk, "_orjson", None)
    rng = random.Random(7)
    awkward = ["\n", "\r\n", "\u2028", "\u2029", "\x00", "\x1e", "\ud800", "\t", '"', "\\", "NULL", "null"]
    for _ in range(500):
        text_ = "".join(
            rng.choice(awkward) if rng.random() < 0.3 else chr(rng.randrange(0x20, 0x3000)) for _ in range(20)
        )
        for value in (text_, {"k": text_, "n": [text_, None, 2**70, 1.5]}, [text_], "NULL", None):
            encoded = bulk.dumps(value)
            assert "\n" not in encoded and encoded != bulk.NULL_TEXT and encoded
            assert json.loads(encoded) == value
