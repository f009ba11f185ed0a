"""APScheduler 3.x, kept behind this module: UTC, coalescing, one instance per job.

Jobs are module-level functions in ``syncd.jobs`` with stable ids, so a restart replaces
rather than duplicates them. Sync jobs run in the thread pool, whose shutdown waits for
running jobs; that is what makes a SIGTERM drain in-flight work.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from . import jobs
from .config import Settings
from .ticks import grid_interval

JOB_DEFAULTS: dict[str, Any] = {"coalesce": True, "max_instances": 1, "misfire_grace_time": 60}


def build_scheduler(settings: Settings) -> AsyncIOScheduler:
    return AsyncIOScheduler(
        timezone=UTC,
        job_defaults=JOB_DEFAULTS,
        executors={"default": ThreadPoolExecutor(max_workers=4)},
    )


def install_jobs(scheduler: AsyncIOScheduler, settings: Settings) -> None:
    s = settings.scheduler
    scheduler.add_job(
        jobs.cluster_prune_idempotency_keys,
        grid_interval(600),
        id="prune_idempotency_keys",
        replace_existing=True,
    )
    scheduler.add_job(
        jobs.refresh_gauges,
        IntervalTrigger(seconds=max(s.outbox_interval_s, 5.0), timezone=UTC),
        id="refresh_gauges",
        replace_existing=True,
    )
    scheduler.add_job(
        jobs.cluster_nightly_maintenance,
        CronTrigger(hour=s.reconcile_cron_hour, timezone=UTC),
        id="nightly_maintenance",
        replace_existing=True,
    )
    # Cluster-wide jobs (leader only, once per tick; see syncd.ticks) on a grid shared by replicas.
    for job_id, func, seconds in (
        ("scheduler_heartbeat", jobs.scheduler_heartbeat, s.heartbeat_interval_s),
        ("follow_changes", jobs.follow_changes, s.follow_interval_s),
        ("audiences", jobs.audiences, s.audience_interval_s),
    ):
        scheduler.add_job(func, grid_interval(seconds), id=job_id, replace_existing=True)
    # The boundary job re-arms itself with a date trigger; its first run is now.
    scheduler.add_job(
        jobs.boundaries,
        DateTrigger(datetime.now(UTC), timezone=UTC),
        id=jobs.BOUNDARIES,
        replace_existing=True,
        misfire_grace_time=None,
    )
    install_stripe_jobs(scheduler, settings)


def install_stripe_jobs(scheduler: AsyncIOScheduler, settings: Settings) -> None:
    """Stripe -> syncd: apply the inbox (~1 s), replay the Events API, nightly full reconcile."""
    s = settings.scheduler
    scheduler.add_job(
        jobs.apply_stripe_inbox,
        IntervalTrigger(seconds=s.inbox_interval_s, timezone=UTC),
        id="apply_stripe_inbox",
        replace_existing=True,
    )
    scheduler.add_job(
        jobs.replay_stripe_events,
        IntervalTrigger(seconds=s.events_replay_interval_s, timezone=UTC),
        id="replay_stripe_events",
        replace_existing=True,
    )
    scheduler.add_job(
        jobs.reconcile_stripe,
        CronTrigger(hour=s.reconcile_cron_hour, minute=30, timezone=UTC),
        id="reconcile_stripe",
        replace_existing=True,
        misfire_grace_time=3600,
    )
    # syncd -> Stripe (cluster-wide: leader only, once per tick).
    scheduler.add_job(
        jobs.flush_usage_to_stripe,
        grid_interval(s.usage_flush_interval_s),
        id="flush_usage_to_stripe",
        replace_existing=True,
    )
    if settings.stripe.push_catalog:
        scheduler.add_job(
            jobs.push_catalog_to_stripe,
            grid_interval(settings.stripe.push_interval_s),
            id="push_catalog_to_stripe",
            replace_existing=True,
        )
