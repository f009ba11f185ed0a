"""Hypothesis fuzzing of the inbound parsers: Stripe webhooks and the SDK event endpoints.

Properties, for any input:
* the parsers raise nothing but their own clear errors (``verify_signature`` returns a bool,
  ``parse_event`` raises only ``MalformedEvent``);
* over HTTP every answer is 2xx or a 4xx with syncd's machine-readable error body, never 5xx;
* a refused request (4xx) changes nothing in the database (a digest of every row of every table).

Bounded for CI (a few hundred examples in total, a few seconds); raise ``SYNCD_FUZZ_EXAMPLES``
for a longer run.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlmodel import SQLModel
from starlette.testclient import TestClient

from syncd.api import create_app
from syncd.apikeys import create_key
from syncd.config import load_settings
from syncd.daemon import Daemon
from syncd.db import session_scope
from syncd.stripe_sync.inbox import MalformedEvent, parse_event
from syncd.stripe_sync.webhook import verify_signature

EXAMPLES = int(os.environ.get("SYNCD_FUZZ_EXAMPLES", "60"))
SECRET = "whsec_fuzz_secret"
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=20),
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)


def sign(body: bytes, secret: str = SECRET, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={hmac.new(secret.encode(), f'{t}.'.encode() + body, hashlib.sha256).hexdigest()}"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    tmp = tmp_path_factory.mktemp("fuzz")
    settings_ = load_settings(
        None,
        environ={
            "SYNCD_DATA_DIR": str(tmp),
            "SYNCD_DATABASE_URL": f"sqlite:///{tmp / 'syncd.db'}",
            "SYNCD_CATALOG_PATH": str(Path(__file__).resolve().parents[2] / "config" / "catalog.toml"),
            "SYNCD_STRIPE_API_KEY": "sk_test_fuzz",
            "SYNCD_STRIPE_WEBHOOK_SECRET": SECRET,
            "SYNCD_SCHEDULER_ENABLED": "false",
        },
    )
    d = Daemon(settings_)
    d.prepare()
    yield d
    d.close()


@pytest.fixture(scope="module")
def client(daemon: Daemon) -> TestClient:
    return TestClient(create_app(daemon))


@pytest.fixture(scope="module")
def keys(daemon: Daemon) -> dict[str, str]:
    with session_scope(daemon.engine) as session:
        return {kind: create_key(session, kind)[1] for kind in ("secret", "publishable")}


def fingerprint(daemon: Daemon) -> str:
    digest = hashlib.sha256()
    with daemon.engine.connect() as conn:
        for table in SQLModel.metadata.sorted_tables:
            rows = conn.execute(select(table)).all()
            digest.update(f"{table.name}:{sorted(map(repr, rows))}".encode())
    return digest.hexdigest()


def assert_clean_answer(response: Any, before: str, daemon: Daemon) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        body = response.json()
        assert isinstance(body.get("error"), str) and isinstance(body.get("code"), str), body
        assert fingerprint(daemon) == before, f"a refused request ({response.status_code}) wrote data"


# --- Stripe webhook: signature header and payload --------------------------------------------
header_parts = st.lists(
    st.one_of(
        st.text(max_size=30),
        st.builds(lambda t: f"t={t}", st.one_of(st.integers(), st.text(max_size=12))),
        st.builds(lambda v: f"v1={v}", st.text(alphabet="0123456789abcdefg", max_size=70)),
        st.just("v0=deadbeef"),
    ),
    max_size=5,
).map(",".join)


@FUZZ
@given(raw=st.binary(max_size=300), header=st.one_of(st.none(), header_parts))
def test_signature_verification_never_raises(raw: bytes, header: str | None) -> None:
    assert verify_signature(raw, header, [SECRET, "whsec_other"], 300) is False


@FUZZ
@given(raw=st.one_of(st.binary(max_size=300), json_value.map(lambda v: json.dumps(v).encode())))
def test_parse_event_raises_only_malformed_event(raw: bytes) -> None:
    try:
        event = parse_event(raw)
    except MalformedEvent:
        return
    assert isinstance(event["id"], str) and isinstance(event["type"], str)


event_like = st.fixed_dictionaries(
    {
        "object": st.just("event"),
        "id": st.one_of(st.text(max_size=20), json_value),
        "type": st.one_of(st.sampled_from(["customer.subscription.updated", "payout.paid"]), json_value),
    },
    optional={
        "created": st.one_of(st.integers(), st.text(max_size=5), json_value),
        "livemode": json_value,
        "api_version": json_value,
        "data": st.one_of(json_value, st.fixed_dictionaries({"object": json_value})),
    },
)
encodings = st.sampled_from(["utf-8", "utf-16", "utf-32"])


@FUZZ
@given(event=event_like, encoding=encodings, signed=st.sampled_from([True, True, True, False]))
def test_stripe_webhook_endpoint_fuzz(
    client: TestClient, daemon: Daemon, event: dict[str, Any], encoding: str, signed: bool
) -> None:
    body = json.dumps(event).encode(encoding)
    headers = {"Stripe-Signature": sign(body) if signed else sign(body, "whsec_wrong")}
    before = fingerprint(daemon)
    response = client.post("/webhooks/stripe", content=body, headers=headers)
    assert_clean_answer(response, before, daemon)
    if not signed:
        assert response.status_code == 400


@pytest.mark.parametrize("created", ["abc", [1], 1e400, -1, True, 2**64])
def test_signed_event_with_a_bad_created_is_a_400(client: TestClient, daemon: Daemon, created: Any) -> None:
    """Found by the fuzzer: these used to be 500s (and Stripe retries 5xx for days)."""
    body = json.dumps({"object": "event", "id": "evt_bad_created", "type": "payout.paid", "created": created})
    before = fingerprint(daemon)
    response = client.post(
        "/webhooks/stripe", content=body.encode(), headers={"Stripe-Signature": sign(body.encode())}
    )
    assert response.status_code == 400 and response.json()["code"] == "invalid_event"
    assert fingerprint(daemon) == before


@pytest.mark.parametrize(
    "fields",
    [
        {"api_version": []},
        {"api_version": 2017},
        {"api_version": "v" * 65},
        {"id": ""},
        {"id": "evt_" + "x" * 260},
        {"type": "t" * 129},
        {"type": "customer.\x00updated"},
        {"id": "evt_\x00"},
        {"id": "evt_\ud800"},  # a lone surrogate: json decodes the escape, UTF-8 cannot hold it
        {"api_version": "2020-08-27\udfff"},
    ],
)
def test_signed_event_with_a_bad_id_type_or_version_is_a_400(
    client: TestClient, daemon: Daemon, fields: dict[str, Any]
) -> None:
    """Found by the fuzzer (api_version = []): a value the inbox's columns cannot hold was a
    500 on the insert; it is the sender's error."""
    event = {"object": "event", "id": "evt_bad_fields", "type": "customer.updated", **fields}
    body = json.dumps(event).encode()
    before = fingerprint(daemon)
    response = client.post("/webhooks/stripe", content=body, headers={"Stripe-Signature": sign(body)})
    assert response.status_code == 400 and response.json()["code"] == "invalid_event"
    assert fingerprint(daemon) == before


@pytest.mark.parametrize("depth", [1_100, 100_000])
def test_a_signed_event_nested_too_deeply_is_a_400(client: TestClient, daemon: Daemon, depth: int) -> None:
    """Past either JSON parser's depth (orjson's 1,024, then the interpreter's recursion limit)
    the body is the sender's error, not a 500 that Stripe would retry for days."""
    body = ('{"object": "event", "id": "evt_deep", "type": "payout.paid", "data": ' + "[" * depth).encode()
    body += ("]" * depth + "}").encode()
    before = fingerprint(daemon)
    response = client.post("/webhooks/stripe", content=body, headers={"Stripe-Signature": sign(body)})
    assert response.status_code == 400 and response.json()["code"] == "invalid_event"
    assert fingerprint(daemon) == before


@pytest.mark.parametrize(("n", "object_id"), [(1, [1]), (2, "obj_\x00"), (3, "obj_\ud800")])
def test_an_odd_object_id_is_stored_without_one(
    client: TestClient, daemon: Daemon, n: int, object_id: Any
) -> None:
    """An object id no column can hold (not text, a NUL, a lone surrogate) is left out: the
    event is stored and answered, not a 500 on every one of Stripe's retries."""
    event = {
        "object": "event",
        "id": f"evt_odd_object_{n}",
        "type": "payout.paid",
        "data": {"object": {"id": object_id}},
    }
    body = json.dumps(event).encode()
    response = client.post("/webhooks/stripe", content=body, headers={"Stripe-Signature": sign(body)})
    assert response.status_code == 200 and response.json()["status"] == "ignored"


# --- SDK events: /batch, /events, /event-batch -------------------------------------------------
keys_map = st.dictionaries(
    st.sampled_from(["id", "domain", "stripe_customer_id", "x"]), json_value, max_size=2
)
event_body = st.fixed_dictionaries(
    {},
    optional={
        "event": st.one_of(st.sampled_from(["api-call", "", "x" * 300]), json_value),
        "company": st.one_of(keys_map, json_value),
        "user": st.one_of(keys_map, json_value),
        "quantity": st.one_of(st.integers(min_value=-5, max_value=2**63), json_value),
        "keys": st.one_of(keys_map, json_value),
        "name": json_value,
        "traits": st.one_of(st.dictionaries(st.text(max_size=8), json_value, max_size=3), json_value),
    },
)
sdk_event = st.fixed_dictionaries(
    {"type": st.one_of(st.sampled_from(["identify", "track", "flag_check"]), json_value), "body": event_body},
    optional={
        "idempotency_key": json_value,
        "sent_at": st.one_of(st.sampled_from(["2026-01-01T00:00:00Z", "yesterday"]), json_value),
        "trusted_client_clock": json_value,
        "backfill": json_value,
    },
)


@FUZZ
@given(
    events=st.lists(sdk_event, max_size=4),
    path=st.sampled_from(["/batch", "/event-batch"]),
    kind=st.sampled_from(["secret", "publishable"]),
    junk=st.one_of(st.none(), st.binary(max_size=40)),
)
def test_event_batch_endpoints_fuzz(
    client: TestClient,
    daemon: Daemon,
    keys: dict[str, str],
    events: list[dict[str, Any]],
    path: str,
    kind: str,
    junk: bytes | None,
) -> None:
    if path == "/event-batch":
        events = [{"event_type": e["type"], "body": e["body"]} for e in events]
    content = junk if junk is not None else json.dumps({"events": events}).encode()
    before = fingerprint(daemon)
    response = client.post(path, content=content, headers={"X-Schematic-Api-Key": keys[kind]})
    assert_clean_answer(response, before, daemon)


@FUZZ
@given(event=sdk_event, kind=st.sampled_from(["secret", "publishable"]))
def test_single_event_endpoint_fuzz(
    client: TestClient, daemon: Daemon, keys: dict[str, str], event: dict[str, Any], kind: str
) -> None:
    payload = {"event_type": event["type"], "body": event["body"]}
    before = fingerprint(daemon)
    content = json.dumps(payload).encode()  # non-strict: Infinity/NaN tokens reach the server too
    response = client.post("/events", content=content, headers={"X-Schematic-Api-Key": keys[kind]})
    assert_clean_answer(response, before, daemon)
