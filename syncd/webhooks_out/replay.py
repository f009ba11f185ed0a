"""``syncd webhooks replay``: put dead letters back in the queue."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import update
from sqlmodel import Session, col, select

from ..models import WebhookDelivery, WebhookEndpoint, utcnow
from ..services.audit import SYSTEM, Actor, record
from ..services.common import require


@dataclass(frozen=True, slots=True)
class Replayed:
    count: int
    inactive_endpoints: list[str]  # endpoints with re-queued rows that will not send until re-enabled


def replay_dead(
    session: Session,
    *,
    webhook_id: str | None = None,
    since: datetime | None = None,
    actor: Actor = SYSTEM,
) -> Replayed:
    """Re-queue dead deliveries (of one endpoint, created at or after ``since``) for a full
    new round of attempts; each keeps its id, so receivers can still dedupe."""
    if webhook_id is not None:
        require(session, WebhookEndpoint, webhook_id, "webhook")
    where = [col(WebhookDelivery.status) == "dead"]
    if webhook_id is not None:
        where.append(col(WebhookDelivery.webhook_id) == webhook_id)
    if since is not None:
        where.append(col(WebhookDelivery.created_at) >= since)
    endpoints = set(session.exec(select(WebhookDelivery.webhook_id).where(*where).distinct()).all())
    now = utcnow()
    result = session.exec(
        update(WebhookDelivery)
        .where(*where)
        .values(status="pending", attempts=0, next_attempt_at=now, last_error=None, updated_at=now)
    )
    count = int(result.rowcount or 0)
    inactive = sorted(
        session.exec(
            select(WebhookEndpoint.id).where(
                col(WebhookEndpoint.id).in_(endpoints), col(WebhookEndpoint.status) != "active"
            )
        ).all()
    )
    record(
        session,
        actor,
        "webhook.replayed",
        "webhook",
        webhook_id,
        after={"count": count, "since": since.isoformat() if since else None},
    )
    return Replayed(count, inactive)
