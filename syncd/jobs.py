"""Scheduled job entry points. Module-level, argument-free: they find the running daemon
through :func:`current_daemon` and bind a job id to the log context."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import structlog
from sqlmodel import Session, col, delete

from .models import EventIdempotency, utcnow

if TYPE_CHECKING:
    from .daemon import Daemon

log = structlog.get_logger(__name__)
_current: Daemon | None = None


def set_current_daemon(daemon: Daemon | None) -> None:
    global _current
    _current = daemon


def current_daemon() -> Daemon:
    if _current is None:
        raise RuntimeError("no daemon is running")
    return _current


def prune_idempotency_keys() -> int:
    """Delete event idempotency keys whose 24 h window has passed."""
    daemon = current_daemon()
    with structlog.contextvars.bound_contextvars(job="prune_idempotency_keys", job_run=uuid.uuid4().hex[:12]):
        with Session(daemon.engine) as session:
            result = session.exec(delete(EventIdempotency).where(col(EventIdempotency.expires_at) < utcnow()))
            session.commit()
            removed = int(result.rowcount or 0)
        log.info("idempotency_keys_pruned", removed=removed)
        return removed


def refresh_gauges() -> None:
    current_daemon().refresh_gauges()


def nightly_maintenance() -> None:
    with structlog.contextvars.bound_contextvars(job="nightly_maintenance", job_run=uuid.uuid4().hex[:12]):
        prune_idempotency_keys()


# -- Stripe -> syncd -------------------------------------------------------------------------
# Each job is idempotent and safe to run twice at once: inbox events are claimed one by one,
# replay de-duplicates through the inbox, and the sweep's writes are watermark-guarded.


def apply_stripe_inbox() -> int:
    """Apply pending Stripe events (webhooks and replayed ones) and expire ended access."""
    from .stripe_sync.apply import apply_pending
    from .stripe_sync.runtime import apply_options, client_for

    daemon = current_daemon()
    result = apply_pending(daemon.engine, client_for(daemon), options=apply_options(daemon.settings))
    return result.processed


def replay_stripe_events() -> int:
    """Pull events missed by webhooks from the Events API into the inbox, then apply them."""
    from .stripe_sync.replay import replay_events
    from .stripe_sync.runtime import client_for

    daemon = current_daemon()
    client = client_for(daemon)
    if client is None:
        return 0
    with structlog.contextvars.bound_contextvars(job="replay_stripe_events", job_run=uuid.uuid4().hex[:12]):
        result = replay_events(daemon.engine, client, overlap_s=daemon.settings.stripe.events_overlap_s)
    apply_stripe_inbox()
    return result.stored


def reconcile_stripe() -> int:
    """Nightly: replay events, then a full sweep of Stripe (resumes an interrupted one)."""
    from .stripe_sync.runtime import client_for
    from .stripe_sync.sweep import sweep

    daemon = current_daemon()
    client = client_for(daemon)
    if client is None:
        return 0
    with structlog.contextvars.bound_contextvars(job="reconcile_stripe", job_run=uuid.uuid4().hex[:12]):
        replay_stripe_events()
        result = sweep(daemon.engine, client, past_due_grace_days=daemon.settings.stripe.past_due_grace_days)
    return result.total
