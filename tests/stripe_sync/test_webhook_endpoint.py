"""POST /webhooks/stripe: signature on raw bytes, rotation, tolerance, durable de-duplicated inbox."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import Session, select
from starlette.testclient import TestClient

from syncd.api import create_app
from syncd.config import load_settings
from syncd.daemon import Daemon
from syncd.models import InboxEvent

SECRET, OLD_SECRET = "whsec_current_secret", "whsec_previous_secret"


def sign(body: bytes, secret: str, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def event(event_id: str = "evt_1", event_type: str = "customer.subscription.updated") -> bytes:
    body = {
        "id": event_id,
        "object": "event",
        "type": event_type,
        "api_version": "2026-10-28.endive",
        "created": 1_790_000_000,
        "livemode": False,
        "data": {"object": {"id": "sub_1", "object": "subscription"}},
    }
    return json.dumps(body, separators=(",", ":")).encode()


@pytest.fixture
def daemon(database_url: str, tmp_path: Path) -> Iterator[Daemon]:
    (tmp_path / "syncd.toml").write_text("")
    settings = load_settings(
        tmp_path / "syncd.toml",
        environ={
            "SYNCD_DATABASE_URL": database_url,
            "SYNCD_CATALOG_PATH": "",
            "SYNCD_STRIPE_API_KEY": "sk_test_x",
            "SYNCD_STRIPE_WEBHOOK_SECRET": f"{SECRET},{OLD_SECRET}",
        },
    )
    d = Daemon(settings)
    d.prepare()
    yield d
    d.close()


def inbox(daemon: Daemon) -> list[InboxEvent]:
    with Session(daemon.engine) as session:
        return list(session.exec(select(InboxEvent)).all())


def test_verified_event_is_stored_raw_and_answered_2xx(daemon: Daemon) -> None:
    client = TestClient(create_app(daemon))
    body = event()
    response = client.post("/webhooks/stripe", content=body, headers={"Stripe-Signature": sign(body, SECRET)})
    assert response.status_code == 200
    assert response.json()["status"] == "pending"
    [row] = inbox(daemon)
    assert row.payload == body.decode()  # exactly the bytes received
    assert (row.event_id, row.object_id, row.status, row.stripe_created) == (
        "evt_1",
        "sub_1",
        "pending",
        1_790_000_000,
    )


def test_duplicate_delivery_is_a_noop_200(daemon: Daemon) -> None:
    client = TestClient(create_app(daemon))
    body = event()
    for _ in range(3):
        response = client.post(
            "/webhooks/stripe", content=body, headers={"Stripe-Signature": sign(body, SECRET)}
        )
        assert response.status_code == 200
    assert response.json()["status"] == "duplicate"
    assert len(inbox(daemon)) == 1


def test_previous_secret_still_verifies_during_rotation(daemon: Daemon) -> None:
    body = event("evt_rotated")
    response = TestClient(create_app(daemon)).post(
        "/webhooks/stripe", content=body, headers={"Stripe-Signature": sign(body, OLD_SECRET)}
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    "header",
    [
        None,
        "garbage",
        sign(event(), "whsec_wrong"),
        sign(event(), SECRET, timestamp=int(time.time()) - 3600),  # replayed / stale
    ],
)
def test_bad_signature_gets_400_and_stores_nothing(daemon: Daemon, header: str | None) -> None:
    headers = {"Stripe-Signature": header} if header else {}
    response = TestClient(create_app(daemon)).post("/webhooks/stripe", content=event(), headers=headers)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_signature"
    assert inbox(daemon) == []
    assert daemon.metrics.webhook_signature_failures._value.get() == 1


def test_tampered_body_is_refused(daemon: Daemon) -> None:
    body = event()
    header = sign(body, SECRET)
    tampered = body.replace(b"sub_1", b"sub_2")
    response = TestClient(create_app(daemon)).post(
        "/webhooks/stripe", content=tampered, headers={"Stripe-Signature": header}
    )
    assert response.status_code == 400
    assert inbox(daemon) == []


def test_irrelevant_event_types_are_recorded_as_ignored_and_answered_2xx(daemon: Daemon) -> None:
    body = event("evt_payout", "payout.paid")
    response = TestClient(create_app(daemon)).post(
        "/webhooks/stripe", content=body, headers={"Stripe-Signature": sign(body, SECRET)}
    )
    assert response.status_code == 200
    assert [r.status for r in inbox(daemon)] == ["ignored"]


def test_signed_non_event_body_is_a_400(daemon: Daemon) -> None:
    body = b'{"hello": "world"}'
    response = TestClient(create_app(daemon)).post(
        "/webhooks/stripe", content=body, headers={"Stripe-Signature": sign(body, SECRET)}
    )
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_event"
    assert inbox(daemon) == []
