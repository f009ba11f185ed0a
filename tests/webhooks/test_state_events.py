"""Events derived from ``entitlements.changed``: limit warnings/reached and ``entitlements.updated``."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Engine
from standardwebhooks import Webhook

from syncd.db import session_scope
from syncd.services import companies, company_plans, entitlements, features, plans
from syncd.services.inputs import EntitlementValue
from syncd.services.metering import TrackInput, track_events

from .conftest import add_endpoint, changes_after, drain, publish_changes
from .receiver import Receiver

JAN = dt.datetime(2026, 1, 10, 12, tzinfo=dt.UTC)
FEB = dt.datetime(2026, 2, 3, 12, tzinfo=dt.UTC)
LIMIT_TYPES = ["entitlement.limit.warning", "entitlement.limit.reached", "entitlement.soft_limit.reached"]


def _world(engine: Engine) -> tuple[str, str, str]:
    """A company on a plan granting 10 api-calls a month (soft limit 5), and an unwatched feature."""
    with session_scope(engine) as session:
        calls = features.create_feature(
            session, name="API calls", feature_type="event", event_subtype="api-call"
        )
        other = features.create_feature(session, name="Exports", feature_type="event", event_subtype="export")
        plan = plans.create_plan(session, name="Pro")
        for feature in (calls, other):
            entitlements.create_plan_entitlement(
                session,
                plan_id=plan.id,
                feature_id=feature.id,
                value=EntitlementValue(
                    "numeric",
                    value_numeric=10,
                    metric_period="current_month",
                    metric_period_month_reset="first_of_month",
                    soft_limit=5 if feature is calls else None,
                ),
            )
        company, _ = companies.upsert_company(session, keys={"slug": "acme"}, name="Acme")
        company_plans.update_company_plans(session, company.id, base_plan_id=plan.id, add_on_ids=[])
        return company.id, calls.id, other.id


def _track(engine: Engine, company_id: str, event: str, quantity: int, when: dt.datetime) -> None:
    with session_scope(engine) as session:
        track_events(session, [TrackInput(company_id, event, quantity, when)], {company_id: None}, when)


def test_limit_warning_and_reached_fire_once_per_period(engine: Engine, receiver: Receiver) -> None:
    company_id, calls, other = _world(engine)
    hook = add_endpoint(
        engine, receiver.url, LIMIT_TYPES, entitlement_trigger_configs=[{"feature_id": calls}]
    )
    seq = max(c.seq for c in changes_after(engine))
    fired: list[tuple[str, int]] = []

    def step(event: str, quantity: int, when: dt.datetime) -> list[tuple[str, int]]:
        nonlocal seq
        # The state is read at ``when`` (publish takes the time explicitly).
        _track(engine, company_id, event, quantity, when)
        batch = changes_after(engine, seq)
        publish_changes(engine, batch, when)
        assert publish_changes(engine, batch, when) == 0  # re-published: nothing twice
        seq = batch[-1].seq
        drain(engine)
        got = [r.json for r in receiver.ok()[len(fired) :]]
        new = [(g["action"], g["body"]["Usage"]) for g in got]
        fired.extend(new)
        return new

    assert step("api-call", 4, JAN) == []
    assert step("api-call", 1, JAN) == [("entitlement.soft_limit.reached", 5)]  # 100 % of 5
    assert step("api-call", 3, JAN) == [("entitlement.limit.warning", 8)]  # 80 % of 10
    assert step("api-call", 1, JAN) == []
    assert step("export", 10, JAN) == []  # a feature the endpoint does not watch
    assert step("api-call", 3, JAN) == [("entitlement.limit.reached", 12)]
    assert step("api-call", 5, JAN) == []
    # A new month re-arms every threshold; one jump crosses both, in order.
    assert step("api-call", 10, FEB) == [
        ("entitlement.limit.warning", 10),
        ("entitlement.limit.reached", 10),
        ("entitlement.soft_limit.reached", 10),
    ]
    last = receiver.ok()[-1]
    body = Webhook(hook.secret).verify(last.body, last.headers)
    assert body["company_id"] == company_id and body["feature_id"] == calls
    assert body["object_type"] == "feature_usage"
    usage = body["body"]
    assert usage["Allocation"] == 5 and usage["Feature"]["id"] == calls
    assert usage["MetricResetAt"].startswith("2026-03-01")
    assert usage["company"]["id"] == company_id and usage["Entitlement"].startswith("pltn_")
    assert other not in {r.json.get("feature_id") for r in receiver.ok()}


def test_entitlements_updated_carries_the_full_new_state(engine: Engine, receiver: Receiver) -> None:
    company_id, calls, _ = _world(engine)
    hook = add_endpoint(engine, receiver.url, ["entitlements.updated"])
    seq = max(c.seq for c in changes_after(engine))
    _track(engine, company_id, "api-call", 3, dt.datetime.now(dt.UTC))
    _track(engine, company_id, "api-call", 4, dt.datetime.now(dt.UTC))
    batch = changes_after(engine, seq)
    assert len(batch) == 2
    assert publish_changes(engine, batch) == 1  # two changes of one company in a batch: one event
    drain(engine)
    (got,) = receiver.wait_for(1)
    event = Webhook(hook.secret).verify(got.body, got.headers)
    assert event["action"] == "entitlements.updated" and event["company_id"] == company_id
    state = event["body"]["company"]
    assert state["id"] == company_id and event["body"]["deleted"] is False
    usage = {e["feature_id"]: (e["usage"], e["allocation"]) for e in state["entitlements"]}
    assert usage[calls] == (7, 10)

    with session_scope(engine) as session:
        companies.delete_company(session, company_id)
    publish_changes(engine, changes_after(engine, batch[-1].seq))
    drain(engine)
    deleted = receiver.wait_for(2)[-1].json["body"]
    assert deleted == {**deleted, "company_id": company_id, "deleted": True, "company": None}
