"""POST /webhooks/stripe under concurrency: deliveries are group-committed, and each is answered
only once its event is durably stored (or not at all with a 2xx)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection
from starlette.types import Message, Receive, Scope, Send

from syncd.api import create_app
from syncd.config import load_settings
from syncd.daemon import Daemon

from .test_webhook_endpoint import SECRET, sign
from .test_webhook_endpoint import daemon as daemon  # the fixture: a prepared daemon with webhook secrets
from .test_webhook_endpoint import event as event_body


def stored(daemon: Daemon) -> dict[str, str]:
    with daemon.engine.connect() as conn:
        rows = conn.execute(text("SELECT event_id, status FROM inbox_event")).all()
        return {str(event_id): str(status) for event_id, status in rows}


def commits(daemon: Daemon) -> list[int]:
    """Counts the engine's commits (appended to the returned list)."""
    seen: list[int] = []
    event.listen(daemon.engine, "commit", lambda _conn: seen.append(1))
    return seen


async def deliver(app: Any, bodies: list[tuple[bytes, str]]) -> list[httpx.Response]:
    """All deliveries at once, as concurrent requests on one event loop."""
    # A 500 is answered, then re-raised to the server (Starlette): answered is what counts here.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://syncd") as client:
        return list(
            await asyncio.gather(
                *(
                    client.post("/webhooks/stripe", content=body, headers={"Stripe-Signature": header})
                    for body, header in bodies
                )
            )
        )


def test_concurrent_deliveries_share_commits_and_duplicates_in_a_group_are_noops(daemon: Daemon) -> None:
    app = create_app(daemon)
    ids = [f"evt_g{n}" for n in range(40)]
    bodies = [event_body(i) for i in ids]
    # Every event twice in the same burst, and a few irrelevant ones.
    deliveries = [(b, sign(b, SECRET)) for b in bodies + bodies]
    ignored = [event_body(f"evt_payout{n}", "payout.paid") for n in range(5)]
    deliveries += [(b, sign(b, SECRET)) for b in ignored]
    seen = commits(daemon)
    responses = asyncio.run(deliver(app, deliveries))
    assert [r.status_code for r in responses] == [200] * len(deliveries)
    statuses = [r.json()["status"] for r in responses]
    # Each id: exactly one first delivery (pending), the other a duplicate.
    for k in range(len(ids)):
        assert sorted([statuses[k], statuses[k + len(ids)]]) == ["duplicate", "pending"]
    assert statuses[-5:] == ["ignored"] * 5
    rows = stored(daemon)
    assert rows == {**dict.fromkeys(ids, "pending"), **{f"evt_payout{n}": "ignored" for n in range(5)}}
    assert len(seen) < len(deliveries) // 4  # grouped: far fewer commits than requests


def test_a_bad_signature_among_good_ones_fails_alone(daemon: Daemon) -> None:
    app = create_app(daemon)
    good = [event_body(f"evt_ok{n}") for n in range(10)]
    bad = event_body("evt_forged")
    deliveries = [(b, sign(b, SECRET)) for b in good[:5]]
    deliveries += [(bad, sign(bad, "whsec_wrong"))]
    deliveries += [(b, sign(b, SECRET)) for b in good[5:]]
    responses = asyncio.run(deliver(app, deliveries))
    assert [r.status_code for r in responses] == [200] * 5 + [400] + [200] * 5
    assert responses[5].json()["code"] == "invalid_signature"
    assert set(stored(daemon)) == {f"evt_ok{n}" for n in range(10)}
    assert daemon.metrics.webhook_signature_failures._value.get() == 1


class CommittedBeforeAnswer:
    """Wraps the app: when a 2xx for an event starts, checks from another connection that the
    event is already committed (visible outside the transaction that wrote it)."""

    def __init__(self, app: Any, database_url: str) -> None:
        self.app = app
        self.observer = create_engine(database_url)
        self.checked: list[str] = []
        self.violations: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        chunks: list[bytes] = []

        async def recording_receive() -> Message:
            message = await receive()
            chunks.append(message.get("body", b""))
            return message

        async def checking_send(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] < 300:
                event_id = json.loads(b"".join(chunks))["id"]
                with self.observer.connect() as conn:
                    found = conn.execute(
                        text("SELECT 1 FROM inbox_event WHERE event_id = :id"), {"id": event_id}
                    ).first()
                (self.checked if found else self.violations).append(event_id)
            await send(message)

        await self.app(scope, recording_receive, checking_send)


def test_no_2xx_is_sent_before_the_event_is_committed(daemon: Daemon, database_url: str) -> None:
    app = CommittedBeforeAnswer(create_app(daemon), database_url)
    bodies = [event_body(f"evt_c{n}") for n in range(30)]
    responses = asyncio.run(deliver(app, [(b, sign(b, SECRET)) for b in bodies]))
    app.observer.dispose()
    assert [r.status_code for r in responses] == [200] * 30
    assert app.violations == []
    assert len(app.checked) == 30


def test_when_the_commit_fails_nothing_is_acknowledged(daemon: Daemon) -> None:
    app = create_app(daemon)

    def refuse(_conn: Connection) -> None:
        raise RuntimeError("disk full")

    event.listen(daemon.engine, "commit", refuse)
    bodies = [event_body(f"evt_f{n}") for n in range(8)]
    try:
        responses = asyncio.run(deliver(app, [(b, sign(b, SECRET)) for b in bodies]))
    finally:
        event.remove(daemon.engine, "commit", refuse)
    assert [r.status_code for r in responses] == [500] * 8
    assert {r.json()["code"] for r in responses} == {"internal_error"}
    assert stored(daemon) == {}
    # Stripe retries: once the database takes writes again, the same deliveries are stored.
    responses = asyncio.run(deliver(app, [(b, sign(b, SECRET)) for b in bodies]))
    assert [r.json()["status"] for r in responses] == ["pending"] * 8
    assert set(stored(daemon)) == {f"evt_f{n}" for n in range(8)}


_REFUSE_POISON = """
CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.event_id = 'evt_poison' THEN
        RAISE EXCEPTION 'value too long' USING ERRCODE = '22001';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER refuse_poison BEFORE INSERT ON inbox_event FOR EACH ROW EXECUTE FUNCTION refuse_poison();
"""


@pytest.mark.postgres
def test_one_unstorable_event_fails_alone_in_its_group(postgres_url: str, tmp_path: Path) -> None:
    """A delivery the database refuses fails the group's statement: each delivery is retried
    on its own, so only that one is refused (400, as the full app answers a value out of
    range). The refusal comes from a trigger: what parsing can tell (an id too long for the
    column, say) is refused before the group."""
    settings = load_settings(
        None,
        environ={
            "SYNCD_DATA_DIR": str(tmp_path),
            "SYNCD_DATABASE_URL": postgres_url,
            "SYNCD_CATALOG_PATH": "",
            "SYNCD_STRIPE_WEBHOOK_SECRET": SECRET,
        },
    )
    daemon = Daemon(settings)
    daemon.prepare()
    with daemon.engine.begin() as conn:
        conn.exec_driver_sql(_REFUSE_POISON)
    try:
        app = create_app(daemon)
        bodies = [event_body(f"evt_n{n}") for n in range(6)]
        bodies.insert(3, event_body("evt_poison"))
        responses = asyncio.run(deliver(app, [(b, sign(b, SECRET)) for b in bodies]))
        assert [r.status_code for r in responses] == [200] * 3 + [400] + [200] * 3
        assert responses[3].json()["code"] == "value_out_of_range"
        assert set(stored(daemon)) == {f"evt_n{n}" for n in range(6)}
    finally:
        daemon.close()


@pytest.mark.postgres
def test_with_several_workers_a_stored_event_wakes_the_applying_worker(
    postgres_url: str, tmp_path: Path
) -> None:
    """Applier in a thread: worker 0 applies (it runs the scheduler); another worker that
    stored an event wakes it with a NOTIFY, so the event does not wait for the next scheduled
    pass."""
    from syncd import jobs
    from syncd.stripe_sync.inbox import parse_event, store_event
    from syncd.stripe_sync.intake import NOTIFY
    from syncd.stripe_sync.runtime import applies_elsewhere, ensure_listening

    def notify_applier(daemon: Daemon) -> None:  # what the storing worker's intake commit sends
        with daemon.engine.begin() as conn:
            conn.execute(NOTIFY)

    def worker(index: int) -> Daemon:
        environ = {
            "SYNCD_DATA_DIR": str(tmp_path / str(index)),
            "SYNCD_DATABASE_URL": postgres_url,
            "SYNCD_CATALOG_PATH": "",
            "SYNCD_STRIPE_WEBHOOK_SECRET": SECRET,
            "SYNCD_STRIPE_REFETCH": "",
            "SYNCD_SERVER_WORKERS": "2",
            "SYNCD_STRIPE_APPLIER": "thread",
            "SYNCD_SCHEDULER_ENABLED": "true" if index == 0 else "false",
        }
        d = Daemon(load_settings(None, environ=environ))
        d.prepare(instance_lock=False)
        return d

    applying, storing = worker(0), worker(1)
    assert applies_elsewhere(storing) and not applies_elsewhere(applying)
    jobs.set_current_daemon(applying)  # as `syncd run` in worker 0 (its scheduler is not started)
    try:
        ensure_listening(applying)
        raw = event_body("evt_other_worker", "customer.created")
        with storing.engine.begin() as conn:
            store_event(conn, raw, parse_event(raw))
        deadline = time.monotonic() + 1.0
        notify_applier(storing)
        while time.monotonic() < deadline:
            with applying.engine.connect() as conn:
                row = conn.execute(
                    text("SELECT status, attempts FROM inbox_event WHERE event_id = 'evt_other_worker'")
                ).one()
            if row.status != "pending" or row.attempts > 0:
                break
            # Until the listener is up, a NOTIFY may be missed: send again (production has the
            # scheduled pass for that).
            time.sleep(0.05)
            notify_applier(storing)
        assert row.status != "pending" or row.attempts > 0, "the applying worker was not woken"
    finally:
        jobs.set_current_daemon(None)
        applying.close()
        storing.close()


def test_payloads_are_stored_byte_for_byte_whatever_they_hold(daemon: Daemon) -> None:
    """Postgres takes a group's columns as array literals: quotes, backslashes, braces, commas,
    the word NULL, newlines (Stripe pretty-prints its bodies) and non-ASCII text in a payload
    must come back exactly as received, and an absent api_version as NULL, not as text."""
    app = create_app(daemon)
    tricky = [
        {"note": 'say "hi"', "path": "C:\\dir\\", "set": "{a,b}", "word": "NULL", "name": "Zoë 東京 🙂"},
        {"empty": "", "quote": '"', "backslash": "\\", "brace": "}", "comma": ","},
        {"nested": {"list": [1, "two", None, True]}, "tab": "a\tb"},
    ]
    bodies: list[bytes] = []
    for n, extra in enumerate(tricky):
        document = json.loads(event_body(f"evt_tricky{n}"))
        document["data"]["object"]["metadata"] = extra
        if n == 2:
            del document["api_version"]
        bodies.append(json.dumps(document, indent=2, ensure_ascii=False).encode())
    responses = asyncio.run(deliver(app, [(b, sign(b, SECRET)) for b in bodies]))
    assert [r.status_code for r in responses] == [200, 200, 200]
    with daemon.engine.connect() as conn:
        rows = dict(
            conn.execute(
                text("SELECT event_id, payload FROM inbox_event WHERE event_id LIKE 'evt_tricky%'")
            ).all()
        )
        versions = dict(
            conn.execute(
                text("SELECT event_id, api_version FROM inbox_event WHERE event_id LIKE 'evt_tricky%'")
            ).all()
        )
    assert {k: v.encode() for k, v in rows.items()} == {f"evt_tricky{n}": b for n, b in enumerate(bodies)}
    assert versions["evt_tricky2"] is None and versions["evt_tricky0"] is not None
