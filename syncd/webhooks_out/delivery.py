"""Sending deliveries: claim due rows, POST them signed, record the outcome.

Ordering: deliveries of one company to one endpoint go out in change order, and a newer one
is not sent until every older one has succeeded or died (a dead letter). Rows without a
company (test sends, catalog events) are independent.

Concurrency: rows are claimed with a guarded ``UPDATE ... WHERE status IN (pending, sending)
AND next_attempt_at <= now RETURNING id`` that moves them to ``sending`` with
``next_attempt_at`` as the claim's expiry, so concurrent workers never send a row twice, and
a crashed worker's rows are retaken when the claim expires. A worker sends a company's rows
only as a contiguous run starting at the oldest open one.

Failures back off exponentially with jitter (tenacity's ``wait_exponential_jitter``),
bounded by ``backoff_max_s``; after ``max_attempts`` the row is dead. An endpoint failing
without a single success for ``disable_after_s``, or with ``disable_after_dead`` dead
letters in a row, is set inactive.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import structlog
import tenacity
from sqlalchemy import Engine, and_, func, tuple_, update
from sqlmodel import Session, col, select

from .. import __version__
from ..models import WebhookDelivery, WebhookEndpoint, utcnow
from ..services.audit import SYSTEM, record
from ..services.webhooks import TEST_REQUEST_TYPE
from .body import encode
from .config import WebhookSettings
from .signing import signed_headers

log = structlog.get_logger(__name__)

OPEN = ("pending", "sending")
_ORDER = (
    func.coalesce(WebhookDelivery.change_seq, 0),
    col(WebhookDelivery.ordinal),
    col(WebhookDelivery.id),
)
_PER_COMPANY = 100  # rows of one company sent in one round at most


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
class Outcome:
    job: Job
    ok: bool
    status_code: int | None = None
    error: str | None = None
    attempted: bool = True  # False: released unsent (an earlier row of its company failed)


def backoff_s(config: WebhookSettings, attempt: int) -> float:
    """Seconds to wait after the ``attempt``-th failed attempt: exponential plus jitter, capped."""
    wait = tenacity.wait_exponential(
        multiplier=config.backoff_initial_s, max=config.backoff_max_s
    ) + tenacity.wait_random(0, config.backoff_initial_s)
    state = tenacity.RetryCallState(tenacity.Retrying(), None, (), {})
    state.attempt_number = attempt
    return min(float(wait(state)), config.backoff_max_s)


# -- claiming --------------------------------------------------------------------------
def _heads(session: Session, now: datetime, limit: int) -> list[WebhookDelivery]:
    """Due rows with no older open row of the same company and endpoint."""
    older = WebhookDelivery.__table__.alias("older")  # type: ignore[attr-defined]
    blocked = (
        select(older.c.id)
        .where(
            older.c.webhook_id == WebhookDelivery.webhook_id,
            older.c.company_id == WebhookDelivery.company_id,
            older.c.status.in_(OPEN),
            tuple_(func.coalesce(older.c.change_seq, 0), older.c.ordinal, older.c.id) < tuple_(*_ORDER),
        )
        .exists()
    )
    query = (
        select(WebhookDelivery)
        .join(WebhookEndpoint, col(WebhookEndpoint.id) == WebhookDelivery.webhook_id)
        .where(
            col(WebhookEndpoint.status) == "active",
            col(WebhookDelivery.status).in_(OPEN),
            col(WebhookDelivery.next_attempt_at) <= now,
            ~blocked,
        )
        .order_by(col(WebhookDelivery.next_attempt_at), *_ORDER)
        .limit(limit)
    )
    return list(session.exec(query).all())


def _followers(
    session: Session, heads: list[WebhookDelivery]
) -> dict[tuple[str, str], list[WebhookDelivery]]:
    """The open rows of each head's company, oldest first (head included), capped per company."""
    groups = sorted({(h.webhook_id, h.company_id) for h in heads if h.company_id is not None})
    if not groups:
        return {}
    rank = (
        func.row_number()
        .over(
            partition_by=(col(WebhookDelivery.webhook_id), col(WebhookDelivery.company_id)), order_by=_ORDER
        )
        .label("rank")
    )
    ranked = (
        select(col(WebhookDelivery.id), rank)
        .where(
            col(WebhookDelivery.status).in_(OPEN),
            tuple_(col(WebhookDelivery.webhook_id), col(WebhookDelivery.company_id)).in_(groups),
        )
        .subquery()
    )
    query = (
        select(WebhookDelivery)
        .join(ranked, ranked.c.id == WebhookDelivery.id)
        .where(ranked.c.rank <= _PER_COMPANY)
        .order_by(ranked.c.rank)
    )
    out: dict[tuple[str, str], list[WebhookDelivery]] = {}
    for row in session.exec(query).all():
        assert row.company_id is not None
        out.setdefault((row.webhook_id, row.company_id), []).append(row)
    return out


def _runs(session: Session, now: datetime, limit: int) -> list[list[WebhookDelivery]]:
    """Candidate runs: per company, the due prefix of its open rows; other rows alone."""
    heads = _heads(session, now, limit)
    followers = _followers(session, heads)
    runs: list[list[WebhookDelivery]] = []
    total = 0
    for head in heads:
        if total >= limit:
            break
        if head.company_id is None:
            run = [head]
        else:
            run = []
            for row in followers.pop((head.webhook_id, head.company_id), []):
                if row.next_attempt_at > now or total + len(run) >= limit:
                    break
                run.append(row)
        if run:
            runs.append(run)
            total += len(run)
    return runs


def claim(engine: Engine, config: WebhookSettings, now: datetime | None = None) -> list[list[Job]]:
    """Claim due deliveries; returns runs to send in order (one run per company and endpoint)."""
    now = now or utcnow()
    expiry = now + timedelta(seconds=config.claim_ttl_s)
    with Session(engine) as session:
        runs = _runs(session, now, config.batch_size)
        ids = [row.id for run in runs for row in run]
        if not ids:
            return []
        claimed = set(
            session.exec(
                update(WebhookDelivery)
                .where(
                    col(WebhookDelivery.id).in_(ids),
                    col(WebhookDelivery.status).in_(OPEN),
                    col(WebhookDelivery.next_attempt_at) <= now,
                )
                .values(status="sending", next_attempt_at=expiry, updated_at=now)
                .returning(col(WebhookDelivery.id))
            ).scalars()
        )
        # A run is ours only from its first row on, without gaps: another worker may hold
        # the rest, and sending past a gap would break the company's order.
        keep: list[list[WebhookDelivery]] = []
        release: list[str] = []
        for run in runs:
            prefix: list[WebhookDelivery] = []
            for row in run:
                if row.id not in claimed:
                    break
                prefix.append(row)
            release += [r.id for r in run[len(prefix) :] if r.id in claimed]
            if prefix:
                keep.append(prefix)
        if release:
            session.exec(
                update(WebhookDelivery)
                .where(col(WebhookDelivery.id).in_(release), col(WebhookDelivery.status) == "sending")
                .values(status="pending", next_attempt_at=now)
            )
        endpoints = {
            e.id: e
            for e in session.exec(
                select(WebhookEndpoint).where(col(WebhookEndpoint.id).in_({r[0].webhook_id for r in keep}))
            )
        }
        jobs = [[_job(row, endpoints[row.webhook_id], config) for row in run] for run in keep]
        session.commit()
    return jobs


def _job(row: WebhookDelivery, endpoint: WebhookEndpoint, config: WebhookSettings) -> Job:
    return Job(
        id=row.id,
        webhook_id=row.webhook_id,
        company_id=row.company_id,
        request_type=row.request_type,
        url=endpoint.url,
        secret=endpoint.secret,
        scheme=endpoint.signature_scheme or config.signature,
        body=encode(row.payload),
        attempts=row.attempts,
    )


# -- sending -----------------------------------------------------------------------------
def make_client(config: WebhookSettings) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=config.timeout_s,
        follow_redirects=False,
        limits=httpx.Limits(max_connections=config.concurrency, max_keepalive_connections=config.concurrency),
        headers={"user-agent": f"syncd-webhooks/{__version__}"},
    )


async def send(client: httpx.AsyncClient, job: Job) -> Outcome:
    headers = {
        "content-type": "application/json",
        **signed_headers(job.scheme, job.secret, job.id, int(time.time()), job.body),
    }
    try:
        response = await client.post(job.url, content=job.body, headers=headers)
    except httpx.HTTPError as exc:
        return Outcome(job, ok=False, error=f"{type(exc).__name__}: {exc}"[:500] or type(exc).__name__)
    if 200 <= response.status_code < 300:
        return Outcome(job, ok=True, status_code=response.status_code)
    return Outcome(job, ok=False, status_code=response.status_code, error=f"HTTP {response.status_code}")


async def send_runs(
    client: httpx.AsyncClient, runs: Sequence[Sequence[Job]], config: WebhookSettings
) -> list[Outcome]:
    """Send runs concurrently, each run in order, stopping a run at its first failure."""
    gate = asyncio.Semaphore(config.concurrency)
    # Stop starting rows well before the claims expire, so no other worker retakes them.
    deadline = time.monotonic() + max(config.claim_ttl_s - 2 * config.timeout_s, config.timeout_s)

    async def run_one(run: Sequence[Job]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        async with gate:
            for i, job in enumerate(run):
                if time.monotonic() > deadline:
                    return outcomes + [Outcome(j, ok=False, attempted=False) for j in run[i:]]
                outcome = await send(client, job)
                outcomes.append(outcome)
                if not outcome.ok:
                    return outcomes + [Outcome(j, ok=False, attempted=False) for j in run[i + 1 :]]
        return outcomes

    results = await asyncio.gather(*(run_one(run) for run in runs))
    return [outcome for run_outcomes in results for outcome in run_outcomes]


# -- recording ---------------------------------------------------------------------------
def _row_update(outcome: Outcome, config: WebhookSettings, now: datetime) -> dict[str, Any]:
    job = outcome.job
    if not outcome.attempted:
        return {"id": job.id, "status": "pending", "next_attempt_at": now, "updated_at": now}
    attempts = job.attempts + 1
    values: dict[str, Any] = {
        "id": job.id,
        "attempts": attempts,
        "response_code": outcome.status_code,
        "sent_at": now,
        "updated_at": now,
        "last_error": outcome.error,
    }
    if outcome.ok:
        values["status"] = "success"
    elif job.request_type == TEST_REQUEST_TYPE:
        values["status"] = "failure"  # a test send is tried once and reported to the caller
    elif attempts >= config.max_attempts:
        values["status"] = "dead"
    else:
        values["status"] = "pending"
        values["next_attempt_at"] = now + timedelta(seconds=backoff_s(config, attempts))
    return values


def record_outcomes(
    engine: Engine, outcomes: Sequence[Outcome], config: WebhookSettings, now: datetime | None = None
) -> None:
    now = now or utcnow()
    if not outcomes:
        return
    updates = [_row_update(o, config, now) for o in outcomes]
    with Session(engine) as session:
        session.exec(update(WebhookDelivery), params=updates)
        _track_endpoints(session, outcomes, updates, config, now)
        session.commit()
    for outcome, values in zip(outcomes, updates, strict=True):
        if values.get("status") == "dead":
            log.warning(
                "webhook_dead_letter",
                delivery_id=outcome.job.id,
                webhook_id=outcome.job.webhook_id,
                attempts=values["attempts"],
                error=outcome.error,
            )


def _track_endpoints(
    session: Session,
    outcomes: Sequence[Outcome],
    updates: Sequence[dict[str, Any]],
    config: WebhookSettings,
    now: datetime,
) -> None:
    """Failure bookkeeping per endpoint, and automatic disabling."""
    touched: dict[str, list[tuple[Outcome, str]]] = {}
    for outcome, values in zip(outcomes, updates, strict=True):
        if outcome.attempted and outcome.job.request_type != TEST_REQUEST_TYPE:
            touched.setdefault(outcome.job.webhook_id, []).append((outcome, values["status"]))
    if not touched:
        return
    for endpoint in session.exec(
        select(WebhookEndpoint).where(col(WebhookEndpoint.id).in_(touched)).with_for_update()
    ):
        for outcome, status in touched[endpoint.id]:
            if outcome.ok:
                endpoint.failing_since, endpoint.consecutive_dead = None, 0
            else:
                endpoint.failing_since = endpoint.failing_since or now
                endpoint.consecutive_dead += status == "dead"
        reason = _disable_reason(endpoint, config, now)
        if reason and endpoint.status == "active":
            endpoint.status, endpoint.disabled_reason, endpoint.updated_at = "inactive", reason, now
            record(session, SYSTEM, "webhook.disabled", "webhook", endpoint.id, after={"reason": reason})
            log.warning("webhook_endpoint_disabled", webhook_id=endpoint.id, reason=reason)
        session.add(endpoint)


def _disable_reason(endpoint: WebhookEndpoint, config: WebhookSettings, now: datetime) -> str | None:
    if config.disable_after_dead and endpoint.consecutive_dead >= config.disable_after_dead:
        return f"{endpoint.consecutive_dead} dead letters in a row"
    if (
        config.disable_after_s
        and endpoint.failing_since is not None
        and (now - endpoint.failing_since).total_seconds() >= config.disable_after_s
    ):
        return f"every delivery failing since {endpoint.failing_since.isoformat()}"
    return None


# -- entry points ------------------------------------------------------------------------
async def deliver_round(engine: Engine, client: httpx.AsyncClient, config: WebhookSettings) -> int:
    """One round: claim, send, record. Returns the number of attempts made."""
    runs = claim(engine, config)
    if not runs:
        return 0
    outcomes = await send_runs(client, runs, config)
    record_outcomes(engine, outcomes, config)
    return sum(o.attempted for o in outcomes)


def claim_one(engine: Engine, config: WebhookSettings, delivery_id: str) -> Job | None:
    """Claim one delivery regardless of its endpoint's status (test sends)."""
    now = utcnow()
    with Session(engine) as session:
        claimed = session.exec(
            update(WebhookDelivery)
            .where(
                and_(
                    col(WebhookDelivery.id) == delivery_id,
                    col(WebhookDelivery.status).in_(OPEN),
                    col(WebhookDelivery.next_attempt_at) <= now,
                )
            )
            .values(status="sending", next_attempt_at=now + timedelta(seconds=config.claim_ttl_s))
            .returning(col(WebhookDelivery.id))
        ).first()
        if claimed is None:
            return None
        row = session.get(WebhookDelivery, delivery_id)
        endpoint = session.get(WebhookEndpoint, row.webhook_id) if row else None
        job = _job(row, endpoint, config) if row and endpoint else None
        session.commit()
        return job


async def send_now(engine: Engine, config: WebhookSettings, delivery_id: str) -> Outcome | None:
    """Send one delivery right away (``POST /webhooks/{id}/test``); None if it was not open."""
    job = await asyncio.to_thread(claim_one, engine, config, delivery_id)
    if job is None:
        return None
    async with make_client(config) as client:
        outcome = await send(client, job)
    await asyncio.to_thread(record_outcomes, engine, [outcome], config)
    return outcome
