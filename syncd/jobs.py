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


def publish_changes(adapter: str) -> None:
    """Publish ``change_log`` rows the adapter has not seen yet (one job per adapter)."""
    publisher = current_daemon().publisher
    if publisher is not None:
        publisher.run(adapter)
