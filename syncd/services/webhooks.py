"""Outbound webhook endpoints (each with its own signing secret) and their delivery log.

Deliveries are only enqueued here (``WebhookDelivery`` rows, status pending); sending them
is ``syncd.webhooks_out``'s job (run by the webhook adapter).
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlmodel import Session, col, select

from ..exceptions import ValidationError
from ..models import CreditType, Feature, WebhookDelivery, WebhookEndpoint, utcnow
from .audit import SYSTEM, Actor, record, snapshot
from .common import FIRST_PAGE, Page, check_choice, require, require_all, text_match

REQUEST_TYPES = (
    "subscription.trial.ended",
    "company.created",
    "company.deleted",
    "company.updated",
    "company.plan_changed",
    "company.scheduled_downgrade",
    "company.override.created",
    "company.override.deleted",
    "company.override.expired",
    "company.override.updated",
    "credit.limit.reached",
    "credit.limit.warning",
    "credit.purchase.success",
    "credit.usage_warning_reached",
    "entitlement.limit.reached",
    "entitlement.limit.warning",
    "entitlement.soft_limit.reached",
    "entitlement.soft_limit.warning",
    "entitlement.tier_limit.reached",
    "entitlement.tier_limit.warning",
    "feature.created",
    "feature.deleted",
    "feature.updated",
    "flag.created",
    "flag.deleted",
    "flag.updated",
    "flag_rules.updated",
    "plan.created",
    "plan.deleted",
    "plan.updated",
    "plan_version.deleted",
    "plan.entitlement.created",
    "plan.entitlement.deleted",
    "plan.entitlement.updated",
    "rule.deleted",
    "test.send",
    "user.created",
    "user.deleted",
    "user.updated",
    "auto.topup.hard.failure",
    "auto.topup.retry.exceeded",
    "auto.topup.success",
    "entitlements.updated",  # syncd's own: a company's full new state after any change
)
STATUSES = ("active", "inactive")
UPDATABLE = (
    "name",
    "url",
    "request_types",
    "entitlement_trigger_configs",
    "credit_trigger_configs",
    "status",
    "signature_scheme",
)
SIGNATURE_SCHEMES = ("standard", "schematic", "both")
TEST_REQUEST_TYPE = "test.send"
TEST_CLAIM = timedelta(minutes=2)


def new_secret() -> str:
    """A Standard Webhooks style secret (``whsec_`` + base64 of 32 random bytes)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def _check(session: Session, endpoint: WebhookEndpoint) -> None:
    if not endpoint.name or len(endpoint.name) > 255:
        raise ValidationError("name must be 1 to 255 characters", code="invalid_name")
    parts = urlsplit(endpoint.url)
    if parts.scheme not in ("http", "https") or not parts.netloc or len(endpoint.url) > 2048:
        raise ValidationError("url must be an absolute http(s) URL", code="invalid_url")
    if not endpoint.request_types:
        raise ValidationError("request_types must not be empty", code="invalid_request_types")
    for request_type in endpoint.request_types:
        check_choice(request_type, REQUEST_TYPES, "request_types")
    check_choice(endpoint.status, STATUSES, "status")
    if endpoint.signature_scheme is not None:
        check_choice(endpoint.signature_scheme, SIGNATURE_SCHEMES, "signature_scheme")
    require_all(session, Feature, [c["feature_id"] for c in endpoint.entitlement_trigger_configs], "feature")
    require_all(session, CreditType, [c["credit_id"] for c in endpoint.credit_trigger_configs], "credit")


def _configs(configs: Sequence[Mapping[str, Any]] | None, field: str) -> list[dict[str, Any]]:
    out = []
    for config in configs or []:
        if not isinstance(config.get(field), str):
            raise ValidationError(f"each trigger config needs a {field}", code="invalid_trigger_config")
        out.append({field: config[field]})
    return out


def create_webhook(
    session: Session,
    *,
    name: str,
    url: str,
    request_types: Sequence[str],
    entitlement_trigger_configs: Sequence[Mapping[str, Any]] | None = None,
    credit_trigger_configs: Sequence[Mapping[str, Any]] | None = None,
    signature_scheme: str | None = None,
    actor: Actor = SYSTEM,
) -> WebhookEndpoint:
    endpoint = WebhookEndpoint(
        signature_scheme=signature_scheme,
        name=name,
        url=url,
        request_types=list(dict.fromkeys(request_types)),
        entitlement_trigger_configs=_configs(entitlement_trigger_configs, "feature_id"),
        credit_trigger_configs=_configs(credit_trigger_configs, "credit_id"),
        secret=new_secret(),
    )
    _check(session, endpoint)
    session.add(endpoint)
    session.flush()
    record(session, actor, "webhook.created", "webhook", endpoint.id, after=snapshot(endpoint))
    return endpoint


def update_webhook(
    session: Session, webhook_id: str, *, changes: Mapping[str, Any], actor: Actor = SYSTEM
) -> WebhookEndpoint:
    """Apply the fields present in ``changes`` (``None`` values are ignored)."""
    endpoint = require(session, WebhookEndpoint, webhook_id, "webhook")
    unknown = set(changes) - set(UPDATABLE)
    if unknown:
        raise ValidationError(f"cannot update {', '.join(sorted(unknown))}", code="invalid_update")
    before = snapshot(endpoint)
    for name, value in changes.items():
        if value is None:
            continue
        if name == "entitlement_trigger_configs":
            value = _configs(value, "feature_id")
        elif name == "credit_trigger_configs":
            value = _configs(value, "credit_id")
        elif name == "request_types":
            value = list(dict.fromkeys(value))
        setattr(endpoint, name, value)
    if before and before["status"] != "active" and endpoint.status == "active":
        # Re-enabled (e.g. after automatic disabling): failure tracking starts over.
        endpoint.failing_since, endpoint.consecutive_dead, endpoint.disabled_reason = None, 0, None
    _check(session, endpoint)
    endpoint.updated_at = utcnow()
    session.add(endpoint)
    session.flush()
    record(session, actor, "webhook.updated", "webhook", endpoint.id, before=before, after=snapshot(endpoint))
    return endpoint


def delete_webhook(session: Session, webhook_id: str, *, actor: Actor = SYSTEM) -> None:
    endpoint = require(session, WebhookEndpoint, webhook_id, "webhook")
    before = snapshot(endpoint)
    session.delete(endpoint)  # the delivery log cascades
    session.flush()
    record(session, actor, "webhook.deleted", "webhook", webhook_id, before=before)


def get_webhook(session: Session, webhook_id: str) -> WebhookEndpoint:
    return require(session, WebhookEndpoint, webhook_id, "webhook")


def list_webhooks(
    session: Session, *, q: str | None = None, page: Page = FIRST_PAGE
) -> list[WebhookEndpoint]:
    query = select(WebhookEndpoint)
    if q:
        query = query.where(text_match(q, WebhookEndpoint.name, WebhookEndpoint.url))
    query = query.order_by(col(WebhookEndpoint.created_at).desc(), col(WebhookEndpoint.id).desc())
    return list(session.exec(page.apply(query)).all())


def list_webhook_events(
    session: Session,
    *,
    webhook_id: str | None = None,
    ids: Sequence[str] | None = None,
    q: str | None = None,
    page: Page = FIRST_PAGE,
) -> list[WebhookDelivery]:
    query = select(WebhookDelivery)
    if webhook_id is not None:
        query = query.where(col(WebhookDelivery.webhook_id) == webhook_id)
    if ids is not None:
        query = query.where(col(WebhookDelivery.id).in_(ids))
    if q:
        query = query.where(text_match(q, WebhookDelivery.request_type))
    query = query.order_by(col(WebhookDelivery.created_at).desc(), col(WebhookDelivery.id).desc())
    return list(session.exec(page.apply(query)).all())


def send_test_webhook_action(
    session: Session,
    webhook_id: str,
    *,
    request_type: str,
    account_id: str,
    environment_id: str,
    actor: Actor = SYSTEM,
) -> WebhookDelivery:
    """Create a ``test.send`` delivery to the endpoint, claimed for the caller to send at once."""
    endpoint = require(session, WebhookEndpoint, webhook_id, "webhook")
    check_choice(request_type, REQUEST_TYPES, "request_type")
    delivery = WebhookDelivery(
        webhook_id=endpoint.id,
        request_type=TEST_REQUEST_TYPE,
        # Claimed for the caller, who sends it at once; should it never do so (a crash), the
        # delivery worker takes it over when the claim expires.
        status="sending",
        next_attempt_at=utcnow() + TEST_CLAIM,
        payload={
            "action": TEST_REQUEST_TYPE,
            "account_id": account_id,
            "environment_id": environment_id,
            "object_type": "test",
            "body": {"webhook_id": endpoint.id, "request_type": request_type},
        },
    )
    session.add(delivery)
    session.flush()
    record(
        session, actor, "webhook.test_enqueued", "webhook", endpoint.id, after={"delivery_id": delivery.id}
    )
    return delivery
