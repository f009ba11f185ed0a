"""Scheduled job entry points. Module-level, argument-free: they find the running daemon
through :func:`current_daemon` and bind a job id to the log context."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import structlog
from apscheduler.schedulers.base import STATE_RUNNING
from apscheduler.triggers.date import DateTrigger
from sqlalchemy import func
from sqlmodel import Session, col, delete, select

from . import ticks
from .boundaries import apply_due, next_boundary
from .models import BoundaryMark, ChangeLog, EventIdempotency, SchedulerRun, SyncCursor, utcnow
from .services import audiences as audience_service
from .services.changes import ENTITLEMENTS_CHANGED, expand

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
    daemon = current_daemon()
    # Leader only: adapters see each change once per cluster (cursors are shared anyway).
    if daemon.publisher is not None and daemon.leadership.is_leader:
        daemon.publisher.run(adapter)


# -- cluster-wide jobs: run by the leader only, once per tick (see syncd.ticks) -----------------

BOUNDARIES = "boundaries"
FOLLOW_CURSOR = "scheduler.follow"
_FOLLOW_BATCH = 5000


def _cluster(job_id: str, body: Callable[[Daemon], object]) -> None:
    daemon = current_daemon()
    if not daemon.leadership.is_leader:
        return
    job = daemon.scheduler.get_job(job_id)
    if job is None:
        return
    with structlog.contextvars.bound_contextvars(job=job_id, job_run=uuid.uuid4().hex[:12]):
        ticks.run_once(daemon.engine, job_id, job.trigger, daemon.leadership.holder, lambda: body(daemon))


def scheduler_heartbeat() -> None:
    """Its ``scheduler_run`` rows show the cluster's scheduler is alive, and who leads."""
    _cluster("scheduler_heartbeat", lambda daemon: None)


def cluster_prune_idempotency_keys() -> None:
    _cluster("prune_idempotency_keys", lambda daemon: prune_idempotency_keys())


def cluster_nightly_maintenance() -> None:
    _cluster("nightly_maintenance", _nightly)


def _nightly(daemon: Daemon) -> None:
    nightly_maintenance()
    prune_scheduler_rows(daemon)


def prune_scheduler_rows(daemon: Daemon) -> None:
    """Old tick claims and boundary marks (kept longer than boundaries look back)."""
    now = utcnow()
    with Session(daemon.engine) as session:
        session.exec(delete(SchedulerRun).where(col(SchedulerRun.tick) < now - timedelta(days=2)))
        session.exec(delete(BoundaryMark).where(col(BoundaryMark.at) < now - timedelta(days=35)))
        session.commit()


def audiences() -> None:
    """Full plan-audience pass (the follower of change_log handles changed companies)."""
    _cluster(
        "audiences",
        lambda daemon: audience_service.reevaluate(
            daemon.engine, None, utcnow(), audience_service.default_loader()
        ),
    )


def follow_changes() -> None:
    _cluster("follow_changes", _follow)


def _follow(daemon: Daemon) -> None:
    """Act on new change_log rows: audiences of the changed companies, boundary re-arm."""
    with Session(daemon.engine) as session:
        row = session.get(SyncCursor, FOLLOW_CURSOR)
        if row is None:  # first run: start from the present
            top = session.exec(select(func.max(ChangeLog.id))).one() or 0
            session.add(SyncCursor(name=FOLLOW_CURSOR, value=str(top)))
            session.commit()
            return
        cursor = int(row.value or 0)
        # Plain rows, not ORM objects: tracked usage logs hundreds of rows a second.
        changes = session.exec(
            select(ChangeLog.id, ChangeLog.topic, ChangeLog.company_id, ChangeLog.payload)
            .where(col(ChangeLog.id) > cursor)
            .order_by(col(ChangeLog.id))
            .limit(_FOLLOW_BATCH)
        ).all()
    if not changes:
        if daemon.scheduler.get_job(BOUNDARIES) is None:
            arm_boundaries(daemon, utcnow())  # never left unarmed (e.g. after a misfire)
        return
    expanded = [c for _, topic, cid, payload in changes for c in expand(topic, cid, payload)]
    everyone = any(cid is None and topic == ENTITLEMENTS_CHANGED for topic, cid, _ in expanded)
    ids = None if everyone else sorted({cid for _, cid, _ in expanded if cid})
    now = utcnow()
    if ids is None or ids:
        audience_service.reevaluate(daemon.engine, ids, now, audience_service.default_loader())
    with Session(daemon.engine) as session:
        upcoming = next_boundary(session, now)
    if upcoming is not None:
        arm_boundaries(daemon, upcoming)
    with Session(daemon.engine) as session:
        row = session.get(SyncCursor, FOLLOW_CURSOR) or SyncCursor(name=FOLLOW_CURSOR)
        row.value, row.updated_at = str(changes[-1][0]), utcnow()
        session.add(row)
        session.commit()


def arm_boundaries(daemon: Daemon, when: datetime) -> None:
    """Make the boundary job fire at ``when`` unless it is already due earlier.

    Runs on the scheduler's event loop, never in the caller's thread: a job thread touching the
    scheduler while ``shutdown(wait=True)`` holds its job-store lock would deadlock the drain.
    """
    loop = daemon.loop
    if loop is not None and not loop.is_closed():
        loop.call_soon_threadsafe(_arm, daemon, when)


def _arm(daemon: Daemon, when: datetime) -> None:
    scheduler = daemon.scheduler
    if scheduler.state != STATE_RUNNING:
        return
    job = scheduler.get_job(BOUNDARIES)
    if job is not None and job.next_run_time is not None and job.next_run_time <= when:
        return
    scheduler.add_job(
        boundaries,
        DateTrigger(when, timezone=UTC),
        id=BOUNDARIES,
        replace_existing=True,
        misfire_grace_time=None,  # however late: a skipped date job would never re-arm
    )


def boundaries() -> None:
    """Apply what is due now, then sleep until the next boundary (or the re-check interval)."""
    daemon = current_daemon()
    settings = daemon.settings.scheduler
    now = utcnow()
    wake = now + timedelta(seconds=settings.boundary_max_sleep_s)
    if daemon.leadership.is_leader:
        with structlog.contextvars.bound_contextvars(job=BOUNDARIES, job_run=uuid.uuid4().hex[:12]):
            counts = apply_due(daemon.engine, now)
            if counts:
                log.info("boundaries_applied", at=now.isoformat(), **counts)
            with Session(daemon.engine) as session:
                upcoming = next_boundary(session, now)
            if upcoming is not None:
                wake = min(wake, upcoming)
    arm_boundaries(daemon, wake)


# -- Stripe -> syncd -------------------------------------------------------------------------
# Each job is idempotent and safe to run twice at once: inbox events are claimed one by one,
# replay de-duplicates through the inbox, and the sweep's writes are watermark-guarded.


def apply_stripe_inbox() -> int:
    """Apply pending Stripe events (webhooks and replayed ones) and expire ended access."""
    from .stripe_sync.apply import apply_pending
    from .stripe_sync.intake import NOTIFY
    from .stripe_sync.runtime import apply_lock, apply_options, client_for, ensure_listening

    daemon = current_daemon()
    if daemon.applier is not None and daemon.applier.alive:  # the child applies: wake it now
        with daemon.engine.begin() as conn:
            conn.execute(NOTIFY)
        return 0
    # No child running (restarting after a crash): apply here meanwhile, as a thread would.
    ensure_listening(daemon)  # several workers: the others wake this one's applier
    lock = apply_lock(daemon)
    if not lock.acquire(blocking=False):
        return 0  # the kicked applier is at it (it runs the same pass)
    try:
        result = apply_pending(daemon.engine, client_for(daemon), options=apply_options(daemon.settings))
    finally:
        lock.release()
    return result.processed


def replay_stripe_events() -> int:
    """Pull events missed by webhooks from the Events API into the inbox, then apply them."""
    from .stripe_sync.replay import replay_events
    from .stripe_sync.runtime import client_for

    daemon = current_daemon()
    client = client_for(daemon)
    if client is None or not daemon.leadership.is_leader:  # one replica replays for the cluster
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
    if client is None or not daemon.leadership.is_leader:  # one replica sweeps for the cluster
        return 0
    with structlog.contextvars.bound_contextvars(job="reconcile_stripe", job_run=uuid.uuid4().hex[:12]):
        replay_stripe_events()
        result = sweep(
            daemon.engine,
            client,
            workers=daemon.settings.stripe.sweep_workers,
            page_size=daemon.settings.stripe.sweep_page(),
            past_due_grace_days=daemon.settings.stripe.past_due_grace_days,
        )
    return result.total


# -- syncd -> Stripe -------------------------------------------------------------------------


def flush_usage_to_stripe() -> None:
    """Usage flush to Stripe meters (leader only, once per tick; see syncd.stripe_push.flush)."""
    _cluster("flush_usage_to_stripe", _flush_usage)


def _flush_usage(daemon: Daemon) -> object:
    from .stripe_push.flush import flush_usage
    from .stripe_sync.runtime import client_for

    client = client_for(daemon)
    return flush_usage(daemon.engine, client) if client is not None else None


def push_catalog_to_stripe() -> None:
    """Catalog and migrated-subscription push (``[stripe] push_catalog``); converges, so a
    push interrupted by a crash or an outage is completed by the next tick."""
    _cluster("push_catalog_to_stripe", _push_catalog)


def _push_catalog(daemon: Daemon) -> object:
    from .stripe_push.push import push
    from .stripe_sync.runtime import client_for

    client = client_for(daemon)
    return push(daemon.engine, client) if client is not None else None
