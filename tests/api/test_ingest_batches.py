"""``POST /batch`` written set-based and group-committed: the counts stay exact.

Against a running syncd on SQLite and Postgres (demo catalog): duplicate idempotency keys
inside one batch, across batches and across concurrent batches that share a transaction;
unknown companies created by their first event; credits burned; one counter row per period
start; and the change log marks tracked usage as usage-only.
"""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlmodel import Session, col, func, select

from syncd.engine.periods import event_buckets
from syncd.models import ChangeLog, Company, CompanyMetric, UsageEvent
from syncd.services.changes import USAGE_CHANGED, USAGE_PAYLOAD, expand

from .conftest import ApiServer, unique


def _company(api: ApiServer) -> tuple[dict[str, str], str]:
    keys = {"account": unique("acct")}
    with api.http("secret") as http:
        created = http.post("/companies", json={"keys": keys, "name": "Acme"}).json()["data"]
    return keys, str(created["id"])


def _track(keys: dict[str, str], quantity: int = 1, key: str | None = None, event: str = "api-call") -> Any:
    body: dict[str, Any] = {"type": "track", "body": {"event": event, "company": keys, "quantity": quantity}}
    if key is not None:
        body["idempotency_key"] = key
    return body


def _counts(api: ApiServer, company_id: str, event: str = "api-call") -> tuple[int, int, int]:
    """(usage events stored, their quantity, the all-time counter) for one company."""
    with Session(api.daemon.engine) as session:
        stored, quantity = session.exec(
            select(func.count(), func.coalesce(func.sum(UsageEvent.quantity), 0)).where(
                col(UsageEvent.company_id) == company_id, col(UsageEvent.event_subtype) == event
            )
        ).one()
        counter = session.exec(
            select(func.coalesce(func.sum(CompanyMetric.value), 0)).where(
                col(CompanyMetric.company_id) == company_id,
                col(CompanyMetric.event_subtype) == event,
                col(CompanyMetric.period) == "all_time",
            )
        ).one()
    return int(stored), int(quantity), int(counter)


def test_duplicate_keys_within_and_across_batches_count_once(demo_api: ApiServer) -> None:
    keys, cid = _company(demo_api)
    a, b = unique("idem"), unique("idem")
    with demo_api.http("publishable") as http:
        first = http.post(
            "/batch", json={"events": [_track(keys, 2, a), _track(keys, 2, a), _track(keys, 3, b)]}
        )
        second = http.post(
            "/batch", json={"events": [_track(keys, 2, a), _track(keys, 7), _track(keys, 3, b)]}
        )
        usage = http.post("/flags/api-calls/check", json={"company": keys}).json()["data"]["entitlement"][
            "usage"
        ]
    assert first.json()["data"] == {"accepted": 2, "duplicates": 1}
    assert second.json()["data"] == {"accepted": 1, "duplicates": 2}
    assert _counts(demo_api, cid) == (3, 12, 12)
    assert usage == 12


def test_concurrent_batches_sharing_keys_and_counters_stay_exact(demo_api: ApiServer) -> None:
    """Many batches at once (the group committer merges them): one key is accepted once
    wherever it appears, and the hot counters equal the accepted events."""
    companies = [_company(demo_api) for _ in range(3)]
    shared = [unique("shared") for _ in range(5)]

    def batch(n: int) -> dict[str, Any]:
        events = [_track(companies[(n + j) % 3][0], 1) for j in range(20)]
        events += [_track(companies[0][0], 10, key) for key in shared]  # the same keys in every batch
        return {"events": events}

    def post(n: int) -> dict[str, int]:
        with demo_api.http("secret") as http:
            response = http.post("/batch", json=batch(n))
        assert response.status_code == 200, response.text
        data: dict[str, int] = response.json()["data"]
        return data

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(post, range(24)))
    assert sum(r["duplicates"] for r in results) == 24 * 5 - 5
    assert sum(r["accepted"] for r in results) == 24 * 20 + 5
    totals = [_counts(demo_api, cid) for _, cid in companies]
    assert sum(t[0] for t in totals) == 24 * 20 + 5
    assert sum(t[2] for t in totals) == 24 * 20 + 5 * 10
    assert all(stored_qty == counter for _, stored_qty, counter in totals)


def test_unknown_company_is_created_by_its_first_track(demo_api: ApiServer) -> None:
    keys = {"account": unique("new")}
    known, known_id = _company(demo_api)
    with demo_api.http("secret") as http:
        response = http.post("/batch", json={"events": [_track(known, 1), _track(keys, 4), _track(keys, 1)]})
        check = http.post("/flags/api-calls/check", json={"company": keys}).json()["data"]
    assert response.json()["data"] == {"accepted": 3, "duplicates": 0}
    new_id = check["company_id"]
    with Session(demo_api.daemon.engine) as session:
        assert new_id is not None and session.get(Company, new_id) is not None
    assert _counts(demo_api, new_id) == (2, 5, 5)
    assert _counts(demo_api, known_id) == (1, 1, 1)
    assert check["entitlement"]["usage"] == 5


def test_credits_are_burned_by_grouped_batches(demo_api: ApiServer) -> None:
    keys, _ = _company(demo_api)  # Free: 100 AI credits a month, one per query
    with demo_api.http("secret") as http:

        def post(_: int) -> int:
            return http.post("/batch", json={"events": [_track(keys, 5, event="ai-query")] * 2}).status_code

        with ThreadPoolExecutor(4) as pool:
            assert set(pool.map(post, range(6))) == {200}
        check = http.post("/flags/ai-assistant/check", json={"company": keys}).json()["data"]
    assert check["entitlement"]["credit_remaining"] == 100 - 6 * 2 * 5


def test_counters_are_keyed_by_period_start(demo_api: ApiServer) -> None:
    keys, cid = _company(demo_api)
    with demo_api.http("secret") as http:
        assert http.post("/batch", json={"events": [_track(keys, 2), _track(keys, 3)]}).status_code == 200
    now = dt.datetime.now(dt.UTC)
    company = demo_api.daemon.store.company_definition(cid)
    assert company is not None
    expected = {
        (b.period, b.month_reset, b.start) for b in event_buckets("api-call", now, company.subscription)
    }
    with Session(demo_api.daemon.engine) as session:
        rows = session.exec(select(CompanyMetric).where(col(CompanyMetric.company_id) == cid)).all()
    found = {(r.period, r.month_reset, _utc(r.period_start)) for r in rows}
    all_time = [r for r in rows if r.period == "all_time"]
    assert len(rows) == len(expected) == 5
    assert all(r.value == 5 for r in rows)
    assert _utc(all_time[0].period_start) == dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    # Away from a period boundary (a run at midnight UTC may straddle one): the exact starts.
    if now.hour != 0 or now.minute != 0:
        assert found == {(p, m, s or dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) for p, m, s in expected}


def test_tracked_usage_is_logged_as_usage_only(demo_api: ApiServer) -> None:
    keys, cid = _company(demo_api)
    with demo_api.http("secret") as http:
        assert http.post("/batch", json={"events": [_track(keys, 1)]}).status_code == 200
        with Session(demo_api.daemon.engine) as session:
            last = session.exec(select(ChangeLog).order_by(col(ChangeLog.id).desc())).first()
        # One usage.changed row per transaction names every company whose usage moved.
        assert last is not None and last.topic == USAGE_CHANGED and last.payload == {"company_ids": [cid]}
        assert expand(last.topic, last.company_id, last.payload) == [
            ("entitlements.changed", cid, USAGE_PAYLOAD)
        ]
        # A usage-only change still reaches checks at once (read-your-writes).
        assert http.post("/batch", json={"events": [_track(keys, 4)]}).status_code == 200
        usage = http.post("/flags/api-calls/check", json={"company": keys}).json()["data"]["entitlement"][
            "usage"
        ]
    assert usage == 5


def _utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
