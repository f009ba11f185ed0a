"""Outbound webhooks end to end: services -> change_log -> deliveries -> a real receiver."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from schematic.webhook_utils.verification import verify_signature
from sqlalchemy import Engine
from sqlmodel import Session
from standardwebhooks import Webhook

from syncd.db import session_scope
from syncd.hookspecs import Change
from syncd.models import WebhookDelivery, WebhookEndpoint, utcnow
from syncd.services import companies, company_plans, features, overrides, plans, webhooks
from syncd.services.inputs import EntitlementValue

from .conftest import FAST, add_endpoint, changes_after, deliveries, drain, publish_changes
from .receiver import Received, Receiver

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _verify(secret: str, received: Received) -> dict[str, Any]:
    payload: dict[str, Any] = Webhook(secret).verify(received.body, received.headers)
    return payload


def _event(seq: int, company_id: str | None, n: int, topic: str = "company.updated") -> Change:
    return Change(seq, topic, company_id, NOW, {"body": {"n": n, "company": company_id}})


def test_override_and_plan_events_are_delivered_signed_and_logged(
    any_engine: Engine, receiver: Receiver
) -> None:
    hook = add_endpoint(
        any_engine,
        receiver.url,
        ["company.override.created", "company.override.deleted", "company.plan_changed"],
    )
    with session_scope(any_engine) as session:
        company, _ = companies.upsert_company(session, keys={"slug": "acme"}, name="Acme")
        feature = features.create_feature(session, name="Seats", feature_type="boolean")
        plan = plans.create_plan(session, name="Pro")
        company_plans.update_company_plans(session, company.id, base_plan_id=plan.id, add_on_ids=[])
        override = overrides.create_company_override(
            session, company_id=company.id, feature_id=feature.id, value=EntitlementValue("boolean", True)
        )
        ids = company.id, feature.id, plan.id, override.id
    with session_scope(any_engine) as session:
        overrides.delete_company_override(session, ids[3])

    assert publish_changes(any_engine, changes_after(any_engine)) == 3
    assert drain(any_engine) == 3

    got = [_verify(hook.secret, r) for r in receiver.wait_for(3)]
    assert [g["action"] for g in got] == [
        "company.plan_changed",
        "company.override.created",
        "company.override.deleted",
    ]
    plan_changed, created, deleted = got
    assert plan_changed["company_id"] == ids[0] and plan_changed["object_type"] == "plan_change"
    assert plan_changed["body"]["base_plan"]["id"] == ids[2]
    assert (
        plan_changed["body"]["action"] == "manage_plan" and plan_changed["body"]["previous_base_plan"] is None
    )
    assert created["body"]["id"] == ids[3] and created["body"]["feature"]["id"] == ids[1]
    assert created["body"]["company"]["id"] == ids[0] and created["body"]["value_bool"] is True
    assert deleted["body"]["id"] == ids[3]
    # The webhook-id is the delivery id: the log shows each one delivered once.
    with Session(any_engine) as session:
        log = webhooks.list_webhook_events(session, webhook_id=hook.id)
        assert {d.id for d in log} == {r.headers["webhook-id"] for r in receiver.ok()}
        assert all((d.status, d.attempts, d.response_code) == ("success", 1, 200) for d in log)


def test_schematic_signature_scheme_verifies_with_the_schematic_sdk(
    engine: Engine, receiver: Receiver
) -> None:
    hook = add_endpoint(engine, receiver.url, ["company.updated"], signature_scheme="schematic")
    publish_changes(engine, [_event(1, "comp_a", 1)])
    drain(engine)
    (got,) = receiver.wait_for(1)
    headers = got.headers
    assert "webhook-signature" not in headers
    assert headers["x-schematic-webhook-signature-version"] == "v1"
    verify_signature(
        got.body,
        headers["x-schematic-webhook-signature"],
        headers["x-schematic-webhook-timestamp"],
        hook.secret,
    )
    with pytest.raises(Exception, match="Invalid signature"):
        verify_signature(got.body + b" ", headers["x-schematic-webhook-signature"], "1", hook.secret)


def test_company_deliveries_keep_order_while_an_older_one_is_retried(
    any_engine: Engine, receiver: Receiver
) -> None:
    """A's first delivery fails once: A's later ones wait for it; B's go out meanwhile."""
    hook = add_endpoint(any_engine, receiver.url, ["company.updated"])
    failed: list[int] = []

    def respond(r: Received) -> int:
        body = json.loads(r.body)["body"]
        if body == {"n": 1, "company": "comp_a"} and not failed:
            failed.append(1)
            return 503
        return 200

    receiver.respond = respond
    batch = [_event(1, "comp_a", 1), _event(2, "comp_b", 1), _event(3, "comp_a", 2), _event(4, "comp_a", 3)]
    batch += [_event(5, "comp_b", 2)]
    publish_changes(any_engine, batch)
    drain(any_engine)

    order = [(r.json["body"]["company"], r.json["body"]["n"], r.status) for r in receiver.received]
    a = [(n, status) for company, n, status in order if company == "comp_a"]
    assert a == [(1, 503), (1, 200), (2, 200), (3, 200)]
    assert [n for company, n, _ in order if company == "comp_b"] == [1, 2]
    # B was not held up by A's retry: both of B's went out before A's retry.
    assert order.index(("comp_b", 2, 200)) < order.index(("comp_a", 1, 200))
    statuses = {(d.company_id, d.status, d.attempts) for d in deliveries(any_engine, hook.id)}
    assert ("comp_a", "success", 2) in statuses


def test_publishing_a_batch_twice_creates_no_duplicate_deliveries(
    any_engine: Engine, receiver: Receiver
) -> None:
    add_endpoint(any_engine, receiver.url, ["company.updated"])
    add_endpoint(any_engine, receiver.url, ["company.updated", "company.deleted"])
    add_endpoint(any_engine, receiver.url, ["company.deleted"])  # not subscribed: gets nothing
    batch = [_event(10, "comp_a", 1), _event(11, None, 2), _event(12, "comp_a", 3, topic="company.deleted")]
    assert publish_changes(any_engine, batch) == 2 + 3 + 1
    assert publish_changes(any_engine, batch) == 0
    assert publish_changes(any_engine, batch[1:]) == 0
    assert len(deliveries(any_engine)) == 6
    drain(any_engine)
    assert len(receiver.wait_for(6)) == 6


def test_inactive_endpoints_and_unsubscribed_types_get_nothing(engine: Engine, receiver: Receiver) -> None:
    hook = add_endpoint(engine, receiver.url, ["company.updated"])
    with session_scope(engine) as session:
        webhooks.update_webhook(session, hook.id, changes={"status": "inactive"})
    assert publish_changes(engine, [_event(1, "comp_a", 1)]) == 0
    assert publish_changes(engine, [_event(2, "comp_a", 1, topic="entitlements.changed")]) == 0


def test_receiver_down_backs_off_then_dead_letters(engine: Engine, receiver: Receiver) -> None:
    hook = add_endpoint(engine, receiver.url, ["company.updated"])
    receiver.stop()
    publish_changes(engine, [_event(1, "comp_a", 1), _event(2, "comp_a", 2), _event(3, "comp_b", 1)])
    started = utcnow()
    drain(engine)
    rows = {(d.company_id, d.payload["body"]["n"]): d for d in deliveries(engine, hook.id)}
    # Each company's head was tried max_attempts times and died; then A's second went the same way.
    assert all(d.status == "dead" and d.attempts == FAST.max_attempts for d in rows.values())
    assert all(d.last_error and "ConnectError" in d.last_error for d in rows.values())
    # Backoff: the three attempts span at least the two minimum waits.
    first_dead = rows[("comp_a", 1)]
    assert first_dead.sent_at is not None
    assert (first_dead.sent_at - started).total_seconds() >= 2 * FAST.backoff_initial_s
    with Session(engine) as session:
        endpoint = session.get(WebhookEndpoint, hook.id)
        assert endpoint is not None and endpoint.consecutive_dead == 3 and endpoint.failing_since is not None


def test_backoff_is_exponential_jittered_and_bounded() -> None:
    from syncd.webhooks_out.config import WebhookSettings
    from syncd.webhooks_out.delivery import backoff_s

    config = WebhookSettings(backoff_initial_s=10, backoff_max_s=100)
    waits = [[backoff_s(config, n) for n in range(1, 8)] for _ in range(50)]
    for series in waits:
        assert 10 <= series[0] <= 20 and 20 <= series[1] <= 30 and 40 <= series[2] <= 50
        assert all(w <= 100 for w in series) and series[-1] == 100
    assert len({round(s[0], 6) for s in waits}) > 1  # jittered


def test_test_delivery_row_is_not_retried(engine: Engine, receiver: Receiver) -> None:
    """A failed test send is reported, not retried, and does not count against the endpoint."""
    from syncd.webhooks_out.delivery import send_now

    hook = add_endpoint(engine, receiver.url, ["company.updated"])
    receiver.respond = lambda _r: 500
    with session_scope(engine) as session:
        row = webhooks.send_test_webhook_action(
            session, hook.id, request_type="company.updated", account_id="a", environment_id="e"
        )
        delivery_id = row.id
    outcome = send_now(engine, FAST, delivery_id)
    assert outcome is not None and (outcome.ok, outcome.status_code) == (False, 500)
    assert send_now(engine, FAST, delivery_id) is None  # not open any more
    with Session(engine) as session:
        row2 = session.get(WebhookDelivery, delivery_id)
        endpoint = session.get(WebhookEndpoint, hook.id)
    assert row2 is not None and (row2.status, row2.attempts, row2.response_code) == ("failure", 1, 500)
    assert endpoint is not None and endpoint.failing_since is None


def test_an_endpoint_deleted_while_its_deliveries_are_in_flight(engine: Engine, receiver: Receiver) -> None:
    """Recording skips rows that vanished; the other endpoint's outcomes are still recorded."""
    from syncd.webhooks_out.claim import claim
    from syncd.webhooks_out.delivery import Sender, record_outcomes

    gone = add_endpoint(engine, receiver.url, ["company.updated"])
    kept = add_endpoint(engine, receiver.url, ["company.updated"])
    publish_changes(engine, [_event(1, "comp_a", 1), _event(2, "comp_b", 1)])
    runs = claim(engine, FAST)
    assert sum(len(r) for r in runs) == 4
    with Sender(FAST) as sender:
        outcomes = sender.send_runs(runs)
    with session_scope(engine) as session:
        webhooks.delete_webhook(session, gone.id)
    record_outcomes(engine, outcomes, FAST)
    assert [d.status for d in deliveries(engine)] == ["success", "success"]
    assert {d.webhook_id for d in deliveries(engine)} == {kept.id}
