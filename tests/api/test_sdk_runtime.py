"""The runtime API through the official SDK: flag checks, track/identify, events, against the
demo catalog (Free: 1,000 API calls a billing month, 3 seats; Enterprise: SSO...)."""

from __future__ import annotations

import time

import httpx
import pytest
from schematic.client import Schematic, SchematicConfig

from .conftest import NO_RETRY, ApiServer, unique


def _company(api: ApiServer) -> dict[str, str]:
    keys = {"account": unique("acct")}
    api.sdk().companies.upsert_company(keys=keys, name="Acme", request_options=NO_RETRY)
    return keys


def _capture_client(api: ApiServer, kind: str = "secret") -> Schematic:
    return Schematic(
        api.keys[kind],
        SchematicConfig(base_url=api.base_url, event_capture_url=api.base_url, cache_providers=[]),
    )


def _eventually(check: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def test_check_flag_on_initial_plan_reports_allocation_and_usage(demo_api: ApiServer) -> None:
    keys = _company(demo_api)
    resp = demo_api.sdk().features.check_flag("api-calls", company=keys, request_options=NO_RETRY)
    data = resp.data
    assert data.value is True
    assert data.rule_type == "plan_entitlement"
    assert data.reason.startswith('Matched plan entitlement rule "Free"')
    assert data.entitlement is not None
    assert (data.entitlement.allocation, data.entitlement.usage) == (1000, 0)
    assert data.entitlement.metric_period == "current_month"
    assert data.company_id is not None and data.company_id.startswith("comp_")


def test_track_through_sdk_buffer_exhausts_allocation(demo_api: ApiServer) -> None:
    keys = _company(demo_api)
    client = _capture_client(demo_api)
    client.track(event="api-call", company=keys, quantity=999)
    client.shutdown()  # flushes the buffer: POST /batch
    sdk = demo_api.sdk()
    _eventually(
        lambda: sdk.features.check_flag("api-calls", company=keys).data.entitlement.usage == 999  # type: ignore[union-attr]
    )
    assert sdk.features.check_flag("api-calls", company=keys).data.value is True
    client = _capture_client(demo_api)
    client.track(event="api-call", company=keys)  # quantity defaults to 1
    client.shutdown()
    _eventually(lambda: sdk.features.check_flag("api-calls", company=keys).data.value is False)
    data = sdk.features.check_flag("api-calls", company=keys).data
    assert data.rule_type == "plan_entitlement_usage_exceeded"
    assert data.entitlement is not None
    assert (data.entitlement.usage, data.entitlement.allocation) == (1000, 1000)


def test_idempotency_key_counts_an_event_once(demo_api: ApiServer) -> None:
    keys = _company(demo_api)
    event = {
        "type": "track",
        "body": {"event": "api-call", "company": keys, "quantity": 5},
        "idempotency_key": unique(),
    }
    with demo_api.http("secret") as http:
        first = http.post("/batch", json={"events": [event, event]})
        second = http.post("/batch", json={"events": [event]})
        assert first.status_code == 200 and second.status_code == 200
        assert first.json()["data"] == {"accepted": 1, "duplicates": 1}
        assert second.json()["data"] == {"accepted": 0, "duplicates": 1}
        check = http.post("/flags/api-calls/check", json={"company": keys}).json()["data"]
    assert check["entitlement"]["usage"] == 5


def test_batch_over_100_events_is_refused_and_writes_nothing(demo_api: ApiServer) -> None:
    keys = {"account": unique("acct")}
    events = [{"type": "track", "body": {"event": "api-call", "company": keys}}] * 101
    before = demo_api.table_counts()
    with demo_api.http("publishable") as http:
        resp = http.post("/batch", json={"events": events})
    assert resp.status_code == 400
    assert resp.json()["error"] == "batch too large"
    assert resp.json()["details"]["max_size"] == 100
    assert demo_api.table_counts() == before


def test_bad_event_rejects_the_whole_batch(demo_api: ApiServer) -> None:
    keys = _company(demo_api)
    good = {"type": "track", "body": {"event": "api-call", "company": keys}}
    bad = {"type": "track", "body": {"event": "api-call", "company": keys, "quantity": "many"}}
    before = demo_api.table_counts()
    with demo_api.http("secret") as http:
        resp = http.post("/batch", json={"events": [good, bad]})
    assert resp.status_code == 400
    assert resp.json()["details"]["index"] == 1
    assert demo_api.table_counts() == before


def test_negative_quantity_needs_a_secret_key(demo_api: ApiServer) -> None:
    keys = _company(demo_api)
    event = {"type": "track", "body": {"event": "api-call", "company": keys, "quantity": -3}}
    with demo_api.http("publishable") as http:
        resp = http.post("/batch", json={"events": [event]})
    assert resp.status_code == 400
    assert resp.json()["code"] == "secret_key_required"
    with demo_api.http("secret") as http:
        plus = {"type": "track", "body": {"event": "api-call", "company": keys, "quantity": 10}}
        assert http.post("/batch", json={"events": [plus, event]}).status_code == 200
        usage = http.post("/flags/api-calls/check", json={"company": keys}).json()["data"]["entitlement"][
            "usage"
        ]
    assert usage == 7


def test_readonly_key_cannot_ingest(demo_api: ApiServer) -> None:
    with demo_api.http("readonly") as http:
        resp = http.post("/batch", json={"events": []})
    assert resp.status_code == 403


def test_boolean_override_wins_and_is_visible_at_once(demo_api: ApiServer) -> None:
    keys = _company(demo_api)
    sdk = demo_api.sdk()
    assert sdk.features.check_flag("sso", company=keys).data.value is False
    company = sdk.companies.lookup_company(keys=keys).data
    feature = next(f for f in sdk.features.list_features().data if f.name == "Single sign-on")
    sdk.entitlements.create_company_override(
        company_id=company.id, feature_id=feature.id, value_type="boolean", value_bool=True
    )
    data = sdk.features.check_flag("sso", company=keys).data
    assert (data.value, data.rule_type) == (True, "company_override")


def test_check_flags_returns_every_flag_and_the_plan(demo_api: ApiServer) -> None:
    keys = _company(demo_api)
    data = demo_api.sdk().features.check_flags(company=keys).data
    flags = {f.flag: f for f in data.flags}
    assert {"api-calls", "seats", "sso", "new-dashboard"} <= set(flags)
    assert flags["seats"].value is True and flags["sso"].value is False
    assert data.plan is not None and data.plan.name == "Free"


def test_check_flags_bulk_answers_each_context(demo_api: ApiServer) -> None:
    a, b = _company(demo_api), {"account": unique("nobody")}
    bulk = demo_api.sdk().features.check_flags_bulk(contexts=[{"company": a}, {"company": b}]).data.data
    assert len(bulk) == 2
    assert {f.flag: f.value for f in bulk[0].flags}["seats"] is True
    assert {f.flag: f.reason for f in bulk[1].flags}["seats"] == "Company not found"


def test_sdk_client_check_flag_and_identify(demo_api: ApiServer) -> None:
    client = _capture_client(demo_api)
    company = {"account": unique("acct")}
    client.identify(keys={"email": f"{unique()}@example.com"}, company={"keys": company, "name": "Idem"})
    client.shutdown()
    sdk = demo_api.sdk()
    _eventually(lambda: _exists(sdk, company))
    client = _capture_client(demo_api)
    assert client.check_flag("seats", company=company) is True
    assert client.check_flag("sso", company=company) is False
    client.shutdown()


def _exists(sdk: Schematic, keys: dict[str, str]) -> bool:
    try:
        sdk.companies.lookup_company(keys=keys, request_options=NO_RETRY)
    except Exception:
        return False
    return True


def test_unknown_flag_is_404_and_unknown_company_gets_the_default(demo_api: ApiServer) -> None:
    with demo_api.http("publishable") as http:
        missing = http.post("/flags/no-such-flag/check", json={})
        unknown = http.post("/flags/seats/check", json={"company": {"account": unique("ghost")}})
        nothing = http.post("/flags/seats/check", json={})
    assert missing.status_code == 404 and missing.json()["code"] == "flag_not_found"
    assert unknown.json()["data"]["value"] is False
    assert unknown.json()["data"]["reason"] == "Company not found"
    assert nothing.json()["data"]["reason"] == "No company or user context; default value for flag"


def test_events_endpoints_validate_against_sdk_models(demo_api: ApiServer) -> None:
    keys = _company(demo_api)
    sdk = demo_api.sdk()
    one = sdk.events.create_event(
        event_type="track", body={"event": "api-call", "company": keys, "quantity": 2}
    )
    assert one.data.remote_ip
    many = sdk.events.create_event_batch(
        events=[{"event_type": "track", "body": {"event": "api-call", "company": keys}}] * 3
    )
    assert len(many.data.events) == 3
    assert sdk.features.check_flag("api-calls", company=keys).data.entitlement.usage == 5  # type: ignore[union-attr]


@pytest.mark.parametrize("body", [b"{", b'{"company": "x"}', b'{"preflight": {"usage": -1}}'])
def test_malformed_check_bodies_are_400(demo_api: ApiServer, body: bytes) -> None:
    with httpx.Client(
        base_url=demo_api.base_url, headers={"X-Schematic-Api-Key": demo_api.keys["secret"]}
    ) as http:
        resp = http.post("/flags/seats/check", content=body, headers={"content-type": "application/json"})
    assert resp.status_code == 400
    assert resp.json()["code"] in ("invalid_json", "invalid_body")


def test_plan_entitlement_change_reaches_checks_at_once(demo_api: ApiServer) -> None:
    keys = _company(demo_api)
    sdk = demo_api.sdk()
    name = unique("Export")
    feature = sdk.features.create_feature(name=name, description="", feature_type="boolean").data
    flag_key = feature.flags[0].key if feature.flags else None
    assert flag_key is not None
    assert sdk.features.check_flag(flag_key, company=keys).data.value is False
    free = next(p for p in sdk.plans.list_plans().data if p.name == "Free")
    sdk.entitlements.create_plan_entitlement(
        plan_id=free.id, feature_id=feature.id, value_type="boolean", value_bool=True
    )
    data = sdk.features.check_flag(flag_key, company=keys).data
    assert (data.value, data.rule_type) == (True, "plan_entitlement")


def test_plan_credits_are_granted_and_burned_by_tracked_usage(demo_api: ApiServer) -> None:
    keys = _company(demo_api)  # Free grants 100 AI credits a month; one query costs one
    with demo_api.http("secret") as http:
        check = http.post("/flags/ai-assistant/check", json={"company": keys}).json()["data"]
        assert check["value"] is True and check["entitlement"]["credit_remaining"] == 100
        flags = http.post("/flags/check", json={"company": keys}).json()["data"]
        assert [b["remaining"] for b in flags["credit_balances"].values()] == [100]
        event = {"type": "track", "body": {"event": "ai-query", "company": keys, "quantity": 60}}
        assert http.post("/batch", json={"events": [event]}).status_code == 200
        check = http.post("/flags/ai-assistant/check", json={"company": keys}).json()["data"]
        assert check["value"] is True and check["entitlement"]["credit_remaining"] == 40
        assert http.post("/batch", json={"events": [event]}).status_code == 200
        check = http.post("/flags/ai-assistant/check", json={"company": keys}).json()["data"]
    assert check["value"] is False
    assert check["rule_type"] == "plan_entitlement_usage_exceeded"
    assert check["entitlement"]["credit_remaining"] == -20  # the draw that overdrew is recorded whole
