"""Cluster-wide jobs run once per tick: the leader claims each tick in ``scheduler_run``.

Every replica schedules every job on the same grid (interval triggers start at a fixed epoch,
cron triggers are absolute), but only the leader runs them. Before running, it claims the tick
by inserting ``(job_id, tick)``; the primary key makes a second claim of the same tick fail, so
two replicas that briefly both believe they lead still run a tick once.

Ticks nobody ran (the leader died and its lease had to run out) are not lost: the next run
covers them (``covers_from``, ``ticks``), like APScheduler's coalescing. A run left ``running``
by a leader that died mid-run is taken over by the next leader and re-run (jobs are idempotent).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from typing import Any

import structlog
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from .models import SchedulerRun, utcnow

log = structlog.get_logger(__name__)

GRID_EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)  # interval jobs fire on the same grid everywhere
_STEP = dt.timedelta(microseconds=1)
_MAX_COUNT = 100_000  # counting missed cron ticks stops here


def grid_interval(seconds: float) -> IntervalTrigger:
    """An interval trigger whose fire times are the same on every replica."""
    return IntervalTrigger(seconds=seconds, start_date=GRID_EPOCH, timezone=dt.UTC)


def latest_tick(trigger: Any, now: dt.datetime) -> dt.datetime | None:
    """The last fire time of ``trigger`` at or before ``now``."""
    if isinstance(trigger, IntervalTrigger):
        start: dt.datetime = trigger.start_date
        if now < start:
            return None
        step: dt.timedelta = trigger.interval
        return start + step * math.floor((now - start) / step)
    last: dt.datetime | None = None
    t = trigger.get_next_fire_time(None, now - dt.timedelta(days=32))
    while t is not None and t <= now:
        last = t
        t = trigger.get_next_fire_time(t, t + _STEP)
    return last


def ticks_between(trigger: Any, after: dt.datetime, until: dt.datetime) -> tuple[dt.datetime, int]:
    """(first fire time after ``after``, number of fire times in ``(after, until]``)."""
    if isinstance(trigger, IntervalTrigger):
        step = trigger.interval
        count = max(1, round((until - after) / step))
        return until - step * (count - 1), count
    first = t = trigger.get_next_fire_time(after, after + _STEP)
    count = 0
    while t is not None and t <= until and count < _MAX_COUNT:
        count += 1
        t = trigger.get_next_fire_time(t, t + _STEP)
    return (first or until), max(count, 1)


def claim(engine: Engine, job_id: str, trigger: Any, tick: dt.datetime, holder: str) -> SchedulerRun | None:
    """Claim ``tick`` of ``job_id`` for ``holder``; None when it is not ours to run."""
    try:
        with Session(engine, expire_on_commit=False) as session:
            last = session.exec(
                select(SchedulerRun)
                .where(col(SchedulerRun.job_id) == job_id)
                .order_by(col(SchedulerRun.tick).desc())
                .limit(1)
                .with_for_update()
            ).first()
            run = _claim(session, last, job_id, trigger, tick, holder)
            session.commit()
            return run
    except IntegrityError:  # another replica claimed the same tick first
        return None


def _claim(
    session: Session,
    last: SchedulerRun | None,
    job_id: str,
    trigger: Any,
    tick: dt.datetime,
    holder: str,
) -> SchedulerRun | None:
    now = utcnow()
    if last is not None and last.tick > tick:
        return None
    if last is not None and last.tick == tick:
        if last.status != "running" or last.holder == holder:
            return None
        # Its holder lost the lease mid-run (we lead now): finish the tick in its place.
        log.warning("tick_taken_over", job=job_id, tick=tick.isoformat(), previous_holder=last.holder)
        last.holder, last.started_at = holder, now
        session.add(last)
        return last
    covers_from, count = tick, 1
    if last is not None:
        covers_from, count = ticks_between(trigger, last.tick, tick)
        if last.status == "running" and last.holder != holder:
            # Abandoned by a dead leader: this run covers its ticks too.
            last.status = "abandoned"
            session.add(last)
            covers_from, count = last.covers_from, count + last.ticks
    run = SchedulerRun(
        job_id=job_id, tick=tick, covers_from=covers_from, ticks=count, holder=holder, started_at=now
    )
    session.add(run)
    return run


def finish(engine: Engine, run: SchedulerRun, status: str) -> None:
    with Session(engine) as session:
        row = session.get(SchedulerRun, (run.job_id, run.tick))
        if row is not None and row.holder == run.holder:
            row.status, row.finished_at = status, utcnow()
            session.add(row)
            session.commit()


def run_once(
    engine: Engine, job_id: str, trigger: Any, holder: str, body: Callable[[], object]
) -> SchedulerRun | None:
    """Claim the current tick and run ``body``; returns the run, or None when skipped."""
    tick = latest_tick(trigger, utcnow())
    if tick is None:
        return None
    run = claim(engine, job_id, trigger, tick, holder)
    if run is None:
        return None
    log.info(
        "cluster_job_started",
        job=job_id,
        tick=run.tick.isoformat(),
        covers_from=run.covers_from.isoformat(),
        ticks=run.ticks,
    )
    try:
        body()
    except Exception:
        log.exception("cluster_job_failed", job=job_id, tick=run.tick.isoformat())
        finish(engine, run, "failed")
        raise
    finish(engine, run, "done")
    log.info("cluster_job_done", job=job_id, tick=run.tick.isoformat(), ticks=run.ticks)
    return run
