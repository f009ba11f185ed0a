"""Dead letters, ``syncd webhooks replay`` and automatic disabling of failing endpoints."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select
from standardwebhooks import Webhook

from syncd import migrate
from syncd.cli import build_parser
from syncd.db import make_engine, session_scope
from syncd.exceptions import NotFoundError
from syncd.hookspecs import Change
from syncd.models import AuditLog, WebhookEndpoint, utcnow
from syncd.services import webhooks
from syncd.webhooks_out.replay import replay_dead

from ..cli_helpers import run_cli, syncd_env
from .conftest import FAST, add_endpoint, deliveries, drain, publish_changes
from .receiver import Receiver

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _events(company: str, count: int, start: int = 1) -> list[Change]:
    return [
        Change(start + i, "company.updated", company, NOW, {"body": {"company": company, "n": i}})
        for i in range(count)
    ]


def test_replay_cli_delivers_every_dead_letter_in_order(
    sqlite_url: str, receiver: Receiver, tmp_path: Path
) -> None:
    engine = make_engine(sqlite_url)
    migrate.upgrade(engine)
    hook = add_endpoint(engine, receiver.url, ["company.updated"])
    other = add_endpoint(engine, receiver.url, ["company.updated"])
    receiver.stop()
    publish_changes(engine, _events("comp_a", 3) + _events("comp_b", 2, start=10))
    drain(engine)
    dead = deliveries(engine, hook.id)
    assert len(dead) == 5 and {d.status for d in dead} == {"dead"}

    receiver.start()
    env = syncd_env(tmp_path, SYNCD_DATABASE_URL=sqlite_url, SYNCD_CATALOG_PATH="")
    done = run_cli("webhooks", "replay", "--endpoint", hook.id, "--since", "1h", env=env)
    assert done.returncode == 0, done.stderr
    assert "re-queued 5 dead-letter deliveries" in done.stdout
    drain(engine)
    got = receiver.wait_for(5)
    for received in got:
        Webhook(hook.secret).verify(received.body, received.headers)
    a = [r.json["body"]["n"] for r in got if r.json["body"]["company"] == "comp_a"]
    assert a == [0, 1, 2]
    assert {r.headers["webhook-id"] for r in got} == {d.id for d in dead}  # same ids as before
    assert {d.status for d in deliveries(engine, hook.id)} == {"success"}
    assert {d.status for d in deliveries(engine, other.id)} == {"dead"}  # --endpoint scoped it
    engine.dispose()


def test_replay_since_filters_and_bad_input_is_refused(any_engine: Engine, receiver: Receiver) -> None:
    hook = add_endpoint(any_engine, receiver.url, ["company.updated"])
    receiver.stop()
    publish_changes(any_engine, _events("comp_a", 2))
    drain(any_engine)
    with session_scope(any_engine) as session:
        assert replay_dead(session, since=utcnow() + dt.timedelta(minutes=1)).count == 0
        result = replay_dead(session, since=utcnow() - dt.timedelta(minutes=1))
    assert (result.count, result.inactive_endpoints) == (2, [])
    assert {d.status for d in deliveries(any_engine, hook.id)} == {"pending"}
    with session_scope(any_engine) as session, pytest.raises(NotFoundError):
        replay_dead(session, webhook_id="whk_missing")
    for since in ("yesterday", "2026-01-01T00:00:00", "5y"):
        with pytest.raises(SystemExit) as exc:
            build_parser().parse_args(["webhooks", "replay", "--since", since])
        assert exc.value.code == 2


def test_endpoint_is_disabled_after_consecutive_dead_letters(engine: Engine, receiver: Receiver) -> None:
    config = replace(FAST, disable_after_dead=2)
    hook = add_endpoint(engine, receiver.url, ["company.updated"])
    receiver.respond = lambda _r: 500
    publish_changes(engine, _events("comp_a", 2) + _events("comp_b", 1, start=5))
    drain(engine, config)
    with Session(engine) as session:
        endpoint = session.get(WebhookEndpoint, hook.id)
        assert endpoint is not None and endpoint.status == "inactive"
        assert endpoint.disabled_reason == "2 dead letters in a row"
        audit = select(AuditLog).where(col(AuditLog.action) == "webhook.disabled")
        assert session.exec(audit).first() is not None
    # a1 and b1 died (3 attempts each; a2 may have had one try in between, jitter decides);
    # a2 stays queued: the endpoint is off.
    assert len(receiver.received) in (2 * config.max_attempts, 2 * config.max_attempts + 1)
    assert [d.status for d in deliveries(engine, hook.id)] == ["dead", "pending", "dead"]
    assert publish_changes(engine, _events("comp_c", 1, start=20)) == 0  # inactive: nothing new

    # Re-enabled: failure tracking starts over and the queue drains.
    receiver.respond = lambda _r: 200
    with session_scope(engine) as session:
        webhooks.update_webhook(session, hook.id, changes={"status": "active"})
        endpoint = session.get(WebhookEndpoint, hook.id)
        assert endpoint is not None and (endpoint.consecutive_dead, endpoint.disabled_reason) == (0, None)
    drain(engine, config)
    assert [r.json["body"]["n"] for r in receiver.ok()] == [1]


def test_endpoint_failing_for_a_day_is_disabled(engine: Engine, receiver: Receiver) -> None:
    hook = add_endpoint(engine, receiver.url, ["company.updated"])
    with session_scope(engine) as session:
        endpoint = session.get(WebhookEndpoint, hook.id)
        assert endpoint is not None
        endpoint.failing_since = utcnow() - dt.timedelta(hours=25)
        session.add(endpoint)
    receiver.respond = lambda _r: 503
    publish_changes(engine, _events("comp_a", 2))
    drain(engine)
    with Session(engine) as session:
        endpoint = session.get(WebhookEndpoint, hook.id)
        assert endpoint is not None and endpoint.status == "inactive"
        assert endpoint.disabled_reason and endpoint.disabled_reason.startswith(
            "every delivery failing since"
        )
    # Disabled after the first failed attempt: the rest stays queued, untried.
    assert len(receiver.received) == 1
    assert [d.status for d in deliveries(engine, hook.id)] == ["pending", "pending"]


def test_a_success_resets_failure_tracking(engine: Engine, receiver: Receiver) -> None:
    hook = add_endpoint(engine, receiver.url, ["company.updated"])
    calls: list[int] = []

    def flaky(_r: object) -> int:
        calls.append(1)
        return 500 if len(calls) == 1 else 200

    receiver.respond = flaky
    publish_changes(engine, _events("comp_a", 1))
    drain(engine)
    with Session(engine) as session:
        endpoint = session.get(WebhookEndpoint, hook.id)
        assert endpoint is not None and endpoint.failing_since is None and endpoint.status == "active"
