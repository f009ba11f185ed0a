"""Outbound webhook endpoints and their delivery log through the official SDK."""

from __future__ import annotations

import json

import pytest
from schematic.errors import BadRequestError, NotFoundError
from schematic.types import EntitlementTriggerConfig
from sqlmodel import Session, col, select

from syncd.models import AuditLog, WebhookDelivery

from .conftest import ApiServer, unique


def test_webhook_crud_and_test_delivery(api: ApiServer) -> None:
    sdk = api.sdk()
    feature = sdk.features.create_feature(name=unique("F"), description="", feature_type="boolean").data
    name = unique("hook")
    hook = sdk.webhooks.create_webhook(
        name=name,
        url="https://example.test/hooks",
        request_types=["company.plan_changed", "entitlement.limit.reached"],
        entitlement_trigger_configs=[EntitlementTriggerConfig(feature_id=feature.id)],
    ).data
    assert hook.id.startswith("whk_") and hook.status == "active" and hook.secret.startswith("whsec_")
    assert (
        hook.entitlement_trigger_configs is not None
        and hook.entitlement_trigger_configs[0].feature_id == feature.id
    )

    assert sdk.webhooks.get_webhook(hook.id).data.secret == hook.secret
    listed = sdk.webhooks.list_webhooks(q=name)
    assert [w.id for w in listed.data] == [hook.id] and listed.params.q == name

    updated = sdk.webhooks.update_webhook(hook.id, status="inactive", url="https://example.test/v2").data
    assert (updated.status, updated.url, updated.name) == ("inactive", "https://example.test/v2", name)
    assert updated.secret == hook.secret

    # Sent at once (example.test does not resolve): the failure is reported and logged, once.
    sent = sdk.webhooks.send_test_webhook_action(hook.id, request_type="company.plan_changed").data
    assert sent.success is False and sent.failure_reason and "ConnectError" in sent.failure_reason
    events = sdk.webhooks.list_webhook_events(webhook_id=hook.id)
    assert len(events.data) == 1 and events.params.webhook_id == hook.id
    event = events.data[0]
    assert (event.request_type, event.status, event.attempt_count) == ("test.send", "failure", 1)
    assert event.webhook is not None and event.webhook.id == hook.id
    assert json.loads(event.payload or "{}")["action"] == "test.send"

    assert sdk.webhooks.delete_webhook(hook.id).data.deleted is True
    with pytest.raises(NotFoundError):
        sdk.webhooks.get_webhook(hook.id)
    with Session(api.daemon.engine) as session:
        assert (
            session.exec(select(WebhookDelivery).where(col(WebhookDelivery.webhook_id) == hook.id)).first()
            is None
        )
        audit = session.exec(select(AuditLog).where(col(AuditLog.entity_id) == hook.id)).first()
    assert audit is not None and audit.after is not None and audit.after["secret"] == "***"


def test_webhook_validation(api: ApiServer) -> None:
    sdk = api.sdk()
    with pytest.raises(BadRequestError):
        sdk.webhooks.create_webhook(name="x", url="ftp://nope", request_types=["company.created"])
    with pytest.raises(BadRequestError):
        sdk.webhooks.create_webhook(name="x", url="https://ok.test", request_types=["company.exploded"])
    with pytest.raises(BadRequestError):
        sdk.webhooks.create_webhook(name="x", url="https://ok.test", request_types=[])
    with pytest.raises(NotFoundError):
        sdk.webhooks.create_webhook(
            name="x",
            url="https://ok.test",
            request_types=["company.created"],
            entitlement_trigger_configs=[EntitlementTriggerConfig(feature_id="feat_missing")],
        )
    with pytest.raises(NotFoundError):
        sdk.webhooks.send_test_webhook_action("whk_missing", request_type="company.created")
    hook = sdk.webhooks.create_webhook(
        name="ok", url="https://ok.test", request_types=["company.created"]
    ).data
    with pytest.raises(BadRequestError):
        sdk.webhooks.update_webhook(hook.id, status="paused")


def test_send_test_webhook_action_delivers_signed_to_a_live_receiver(api: ApiServer) -> None:
    from standardwebhooks import Webhook

    from ..webhooks.receiver import Receiver

    receiver = Receiver().start()
    try:
        sdk = api.sdk()
        hook = sdk.webhooks.create_webhook(
            name=unique("live"), url=receiver.url, request_types=["company.updated"]
        ).data
        sent = sdk.webhooks.send_test_webhook_action(hook.id, request_type="company.updated").data
        assert (sent.success, sent.response_code, sent.failure_reason) == (True, 200, None)
        (got,) = receiver.wait_for(1)
        payload = Webhook(hook.secret).verify(got.body, got.headers)
        assert payload["action"] == "test.send" and payload["body"]["request_type"] == "company.updated"
        (event,) = sdk.webhooks.list_webhook_events(webhook_id=hook.id).data
        assert (event.status, event.attempt_count, event.response_code) == ("success", 1, 200)
        assert event.id == got.headers["webhook-id"] and json.loads(event.payload or "{}") == payload

        receiver.respond = lambda _r: 503
        failed = sdk.webhooks.send_test_webhook_action(hook.id, request_type="company.updated").data
        assert (failed.success, failed.response_code, failed.failure_reason) == (False, 503, "HTTP 503")
    finally:
        receiver.stop()
