"""Claiming due deliveries without breaking per-company order, safely under concurrency.

A row is a *head* when no older open row (pending or sending) of the same company and
endpoint exists. Each head starts a *run*: its company's open rows in order, as long as they
are due. Rows are claimed with a guarded ``UPDATE ... WHERE status IN (pending, sending) AND
next_attempt_at <= now RETURNING id`` that moves them to ``sending`` with ``next_attempt_at``
as the claim's expiry: concurrent workers never both win a row, and a crashed worker's rows
are retaken when the claim expires. A worker keeps a run only from its head on without gaps
(another worker may hold the rest) and releases what follows a gap.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, tuple_, update
from sqlalchemy import select as sa_select  # sqlmodel's select takes at most four columns
from sqlmodel import Session, col, select

from ..models import WebhookDelivery, WebhookEndpoint, utcnow
from .body import encode
from .config import WebhookSettings

OPEN = ("pending", "sending")
D = WebhookDelivery
_ORDER = (func.coalesce(D.change_seq, 0), col(D.ordinal), col(D.id))


@dataclass(frozen=True, slots=True)
class Job:
    """A claimed delivery with what is needed to send it."""

    id: str
    webhook_id: str
    company_id: str | None
    request_type: str
    url: str
    secret: str
    scheme: str
    body: bytes
    attempts: int


@dataclass(frozen=True, slots=True)
class _Row:
    id: str
    webhook_id: str
    company_id: str | None
    next_attempt_at: datetime


_COLUMNS = (col(D.id), col(D.webhook_id), col(D.company_id), col(D.next_attempt_at))


def _heads(session: Session, now: datetime, limit: int) -> list[_Row]:
    """Due rows of active endpoints with no older open row of the same company, oldest due first."""
    older = D.__table__.alias("older")  # type: ignore[attr-defined]
    blocked = (
        select(older.c.id)
        .where(
            older.c.webhook_id == D.webhook_id,
            older.c.company_id == D.company_id,
            older.c.status.in_(OPEN),
            tuple_(func.coalesce(older.c.change_seq, 0), older.c.ordinal, older.c.id) < tuple_(*_ORDER),
        )
        .exists()
    )
    query = (
        select(*_COLUMNS)
        .join(WebhookEndpoint, col(WebhookEndpoint.id) == D.webhook_id)
        .where(
            col(WebhookEndpoint.status) == "active",
            col(D.status).in_(OPEN),
            col(D.next_attempt_at) <= now,
            ~blocked,
        )
        .order_by(col(D.next_attempt_at), *_ORDER)
        .limit(limit)
    )
    return [_Row(*row) for row in session.exec(query)]


def _queues(session: Session, heads: list[_Row], per_company: int) -> dict[tuple[str, str], list[_Row]]:
    """The first ``per_company`` open rows of each head's company, in order (head first)."""
    groups = sorted({(h.webhook_id, h.company_id) for h in heads if h.company_id is not None})
    if not groups:
        return {}
    rank = func.row_number().over(partition_by=(col(D.webhook_id), col(D.company_id)), order_by=_ORDER)
    ranked = (
        sa_select(*_COLUMNS, rank.label("rank"))
        .where(col(D.status).in_(OPEN), tuple_(col(D.webhook_id), col(D.company_id)).in_(groups))
        .subquery()
    )
    query = select(ranked.c.id, ranked.c.webhook_id, ranked.c.company_id, ranked.c.next_attempt_at).where(
        ranked.c.rank <= per_company
    )
    out: dict[tuple[str, str], list[_Row]] = {}
    for row in session.exec(query.order_by(ranked.c.rank)):
        out.setdefault((row[1], row[2]), []).append(_Row(*row))
    return out


def _runs(session: Session, now: datetime, limit: int) -> list[list[_Row]]:
    """Candidate runs, at most ``limit`` rows in all: many companies get short runs, one
    company with a backlog a long one."""
    heads = _heads(session, now, limit)
    if not heads:
        return []
    queues = _queues(session, heads, -(-limit // len(heads)))
    runs: list[list[_Row]] = []
    for head in heads:
        if head.company_id is None:
            runs.append([head])
            continue
        run = []
        for row in queues.get((head.webhook_id, head.company_id), []):
            if row.next_attempt_at > now:
                break
            run.append(row)
        if run:
            runs.append(run)
    return runs


def _claim_rows(session: Session, ids: list[str], now: datetime, expiry: datetime) -> set[str]:
    statement = (
        update(D)
        .where(col(D.id).in_(ids), col(D.status).in_(OPEN), col(D.next_attempt_at) <= now)
        .values(status="sending", next_attempt_at=expiry, updated_at=now)
        .returning(col(D.id))
    )
    return set(session.exec(statement).scalars())


def _jobs(session: Session, runs: list[list[str]], config: WebhookSettings) -> list[list[Job]]:
    ids = [i for run in runs for i in run]
    query = sa_select(
        col(D.id), col(D.webhook_id), col(D.company_id), col(D.request_type), col(D.payload), col(D.attempts)
    ).where(col(D.id).in_(ids))
    rows = {row[0]: row for row in session.connection().execute(query)}
    endpoints = {
        e.id: e
        for e in session.exec(
            select(WebhookEndpoint).where(col(WebhookEndpoint.id).in_({r[1] for r in rows.values()}))
        )
    }

    def job(row: Any) -> Job:
        endpoint = endpoints[row[1]]
        return Job(
            id=row[0],
            webhook_id=row[1],
            company_id=row[2],
            request_type=row[3],
            url=endpoint.url,
            secret=endpoint.secret,
            scheme=endpoint.signature_scheme or config.signature,
            body=encode(row[4]),
            attempts=row[5],
        )

    return [[job(rows[i]) for i in run] for run in runs]


def claim(engine: Engine, config: WebhookSettings, now: datetime | None = None) -> list[list[Job]]:
    """Claim due deliveries; returns runs to send, each in order (one per company and endpoint)."""
    now = now or utcnow()
    with Session(engine) as session:
        runs = _runs(session, now, config.batch_size)
        if not runs:
            return []
        claimed = _claim_rows(
            session, [r.id for run in runs for r in run], now, now + timedelta(seconds=config.claim_ttl_s)
        )
        keep: list[list[str]] = []
        release: list[str] = []
        for run in runs:
            prefix: list[str] = []
            for row in run:
                if row.id not in claimed:
                    break
                prefix.append(row.id)
            release += [r.id for r in run[len(prefix) :] if r.id in claimed]
            if prefix:
                keep.append(prefix)
        if release:
            session.exec(
                update(D)
                .where(col(D.id).in_(release), col(D.status) == "sending")
                .values(status="pending", next_attempt_at=now)
            )
        jobs = _jobs(session, keep, config) if keep else []
        session.commit()
    return jobs


def claimed_job(engine: Engine, config: WebhookSettings, delivery_id: str) -> Job | None:
    """The job of a delivery created already claimed (a test send), its claim renewed; None
    if it is no longer claimed (sent, or taken over by a worker after the claim expired)."""
    now = utcnow()
    with Session(engine) as session:
        renewed = session.exec(
            update(D)
            .where(col(D.id) == delivery_id, col(D.status) == "sending")
            .values(next_attempt_at=now + timedelta(seconds=config.claim_ttl_s), updated_at=now)
            .returning(col(D.id))
        ).first()
        jobs = _jobs(session, [[delivery_id]], config) if renewed else []
        session.commit()
    return jobs[0][0] if jobs else None
