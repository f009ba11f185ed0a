"""Metric period rollovers: at a period boundary, republish the companies whose usage resets.

A company is affected by a rollover of (period, month reset) when it is metered in it: an
entitlement of a plan version it is assigned (or of the fallback plan, for companies without a
base plan), an override, or usage in the period that just ended of an event a metric condition
(flag rule or plan audience) counts in that period. The instants between the previous pass and
now are found from a cursor (``sync_cursor`` ``boundaries.rollover``); each (company, period,
instant) is marked, so a pass interrupted half-way never publishes a company twice.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

import structlog
from sqlalchemy import and_, func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from ..db import session_scope
from ..engine.periods import billing_period_start, calendar_period_start
from ..models import (
    BoundaryMark,
    CatalogSettingsRow,
    Company,
    CompanyMetric,
    CompanyOverride,
    CompanyPlan,
    Condition,
    Plan,
    PlanEntitlement,
    SyncCursor,
    utcnow,
)
from ..services.changes import entitlements_changed
from ..services.company_plans import published_version
from .scan import BILLING_MONTH, Period, billing_subscriptions, periods_in_use

log = structlog.get_logger(__name__)

CURSOR = "boundaries.rollover"
CHUNK = 500  # companies per transaction: a midnight rollover may touch every company


def _same_period(model: type[PlanEntitlement] | type[CompanyOverride], period: Period) -> list[Any]:
    return [
        col(model.metric_period) == period[0],
        func.coalesce(col(model.metric_period_month_reset), "first_of_month") == period[1],
    ]


def _metric_events(session: Session, period: Period) -> set[str]:
    """Events whose usage in ``period`` a metric condition (flag rule or audience) reads."""
    rows = session.exec(
        select(Condition.event_subtype).where(
            col(Condition.condition_type) == "metric",
            col(Condition.metric_period) == period[0],
            func.coalesce(col(Condition.metric_period_month_reset), "first_of_month") == period[1],
        )
    ).all()
    events = {e for e in rows if e}
    for audience in session.exec(select(Plan.audience)).all():
        for cond in audience or []:
            if (
                cond.get("condition_type") == "metric"
                and (cond.get("metric_period"), cond.get("metric_period_month_reset") or "first_of_month")
                == period
                and cond.get("event_subtype")
            ):
                events.add(cond["event_subtype"])
    return events


def metered_companies(session: Session, period: Period, ended_start: dt.datetime | None) -> set[str]:
    """Companies metered in ``period`` (``ended_start``: start of the period that just ended)."""
    found = set(
        session.exec(
            select(CompanyPlan.company_id)
            .join(PlanEntitlement, col(PlanEntitlement.plan_version_id) == col(CompanyPlan.plan_version_id))
            .where(*_same_period(PlanEntitlement, period))
        ).all()
    )
    found.update(
        session.exec(select(CompanyOverride.company_id).where(*_same_period(CompanyOverride, period))).all()
    )
    settings = session.get(CatalogSettingsRow, 1)
    fallback = (
        published_version(session, settings.fallback_plan_id)
        if settings and settings.fallback_plan_id
        else None
    )
    if (
        fallback is not None
        and session.exec(
            select(PlanEntitlement.id).where(
                col(PlanEntitlement.plan_version_id) == fallback.id, *_same_period(PlanEntitlement, period)
            )
        ).first()
    ):
        with_base = select(CompanyPlan.company_id).where(col(CompanyPlan.role) == "base")
        found.update(session.exec(select(Company.id).where(col(Company.id).not_in(with_base))).all())
    events = _metric_events(session, period)
    if events and ended_start is not None:
        found.update(
            session.exec(
                select(CompanyMetric.company_id).where(
                    col(CompanyMetric.event_subtype).in_(events),
                    col(CompanyMetric.period) == period[0],
                    col(CompanyMetric.month_reset) == period[1],
                    col(CompanyMetric.period_start) == ended_start,
                )
            ).all()
        )
    return found


def _previous_start(period: Period, start: dt.datetime) -> dt.datetime | None:
    """Start of the calendar period before the one starting at ``start``."""
    return calendar_period_start(period[0], start - dt.timedelta(microseconds=1))


def due_rollovers(
    session: Session, since: dt.datetime, now: dt.datetime
) -> dict[str, list[tuple[str, dt.datetime]]]:
    """(subject, instant) marks to write per company for rollovers in ``(since, now]``."""
    due: dict[str, list[tuple[str, dt.datetime]]] = {}

    def add(cids: Iterable[str], period: Period, instant: dt.datetime) -> None:
        for cid in cids:
            due.setdefault(cid, []).append((f"{cid}:{period[0]}:{period[1]}", instant))

    for period in sorted(periods_in_use(session)):
        if period == BILLING_MONTH:
            subs = billing_subscriptions(session)
            metered: set[str] | None = None
            for cid, sub in subs.items():
                instant = billing_period_start(sub, now)
                if since < instant <= now:
                    metered = metered if metered is not None else metered_companies(session, period, None)
                    if cid in metered:
                        add([cid], period, instant)
            instant = billing_period_start(None, now)  # companies without a subscription
            if since < instant <= now:
                ended = _previous_start(("current_month", "first_of_month"), instant)
                add(metered_companies(session, period, ended) - subs.keys(), period, instant)
            continue
        start = calendar_period_start(period[0], now)
        if start is not None and since < start <= now:
            add(metered_companies(session, period, _previous_start(period, start)), period, start)
    return due


def _cursor(session: Session, now: dt.datetime) -> dt.datetime:
    row = session.get(SyncCursor, CURSOR)
    if row is None or not row.value:
        return now  # first pass ever: start following from here
    return dt.datetime.fromisoformat(row.value)


def roll_metric_periods(engine: Engine, now: dt.datetime) -> int:
    """Publish every company whose metered usage rolled over since the last pass."""
    with Session(engine) as session:
        since = _cursor(session, now)
        due = due_rollovers(session, since, now) if since < now else {}
    marked = and_(col(BoundaryMark.kind) == "metric_rollover")
    published = 0
    ids = sorted(due)
    for i in range(0, len(ids), CHUNK):
        chunk = ids[i : i + CHUNK]
        with session_scope(engine) as session:
            subjects = [s for cid in chunk for s, _ in due[cid]]
            seen = {
                (m.subject, m.at)
                for m in session.exec(
                    select(BoundaryMark).where(marked, col(BoundaryMark.subject).in_(subjects))
                ).all()
            }
            fresh: list[str] = []
            for cid in chunk:
                todo = [(s, at) for s, at in due[cid] if (s, at) not in seen]
                session.add_all(BoundaryMark(kind="metric_rollover", subject=s, at=at) for s, at in todo)
                if todo:
                    fresh.append(cid)
            if fresh:
                entitlements_changed(session, fresh)
            published += len(fresh)
    with session_scope(engine) as session:
        row = session.get(SyncCursor, CURSOR) or SyncCursor(name=CURSOR)
        row.value, row.updated_at = now.isoformat(), utcnow()
        session.add(row)
    if published:
        log.info("metric_periods_rolled", companies=published)
    return published
