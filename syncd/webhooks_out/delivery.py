"""Sending deliveries: claim due rows, POST them signed, record the outcome.

Ordering: deliveries of one company to one endpoint go out in change order, and a newer one
is not sent until every older one has succeeded or died (a dead letter); ``claim.py`` hands
out runs that respect this. Rows without a company (test sends, catalog events) are
independent. Runs are sent concurrently from a thread pool, each run in order.

Failures back off exponentially with jitter (tenacity's ``wait_exponential`` + ``wait_random``),
bounded by ``backoff_max_s``; after ``max_attempts`` the row is dead. An endpoint failing
without a single success for ``disable_after_s``, or with ``disable_after_dead`` dead
letters in a row, is set inactive.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import structlog
import tenacity
from sqlalchemy import Engine, bindparam, update
from sqlmodel import Session, col, select

from .. import __version__
from ..models import WebhookDelivery, WebhookEndpoint, utcnow
from ..services.audit import SYSTEM, record
from ..services.webhooks import TEST_REQUEST_TYPE
from .claim import OPEN as OPEN
from .claim import Job, claim, claimed_job
from .config import WebhookSettings
from .signing import signed_headers

log = structlog.get_logger(__name__)


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


# -- sending -----------------------------------------------------------------------------
def make_client(config: WebhookSettings) -> httpx.Client:
    # A synchronous client shared by a thread pool: far cheaper per request than httpx's
    # async pool with many connections (measured: ~1 ms vs ~3 ms of CPU per delivery).
    return httpx.Client(
        timeout=config.timeout_s,
        follow_redirects=False,
        limits=httpx.Limits(max_connections=config.concurrency, max_keepalive_connections=config.concurrency),
        headers={"user-agent": f"syncd-webhooks/{__version__}"},
    )


class Sender:
    """An HTTP client and the threads that send runs concurrently (one run per thread)."""

    def __init__(self, config: WebhookSettings) -> None:
        self.config = config
        self.client = make_client(config)
        self.pool = ThreadPoolExecutor(config.concurrency, thread_name_prefix="syncd-webhook-send")

    def __enter__(self) -> Sender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        self.client.close()

    def send_runs(self, runs: Sequence[Sequence[Job]]) -> list[Outcome]:
        """Send runs concurrently, each in order, stopping a run at its first failure."""
        # Stop starting rows well before the claims expire, so no other worker retakes them.
        config = self.config
        deadline = time.monotonic() + max(config.claim_ttl_s - 2 * config.timeout_s, config.timeout_s)

        def run_one(run: Sequence[Job]) -> list[Outcome]:
            outcomes: list[Outcome] = []
            for i, job in enumerate(run):
                if time.monotonic() > deadline:
                    return outcomes + [Outcome(j, ok=False, attempted=False) for j in run[i:]]
                outcome = send(self.client, job)
                outcomes.append(outcome)
                if not outcome.ok:
                    return outcomes + [Outcome(j, ok=False, attempted=False) for j in run[i + 1 :]]
            return outcomes

        if len(runs) == 1:
            return run_one(runs[0])
        return [outcome for result in self.pool.map(run_one, runs) for outcome in result]


def send(client: httpx.Client, job: Job) -> Outcome:
    headers = {
        "content-type": "application/json",
        **signed_headers(job.scheme, job.secret, job.id, int(time.time()), job.body),
    }
    try:
        response = client.post(job.url, content=job.body, headers=headers)
    except Exception as exc:  # any failure to send is a failed attempt, never a stuck claim
        if not isinstance(exc, httpx.HTTPError):
            log.warning("webhook_send_error", delivery_id=job.id, error=repr(exc))
        return Outcome(job, ok=False, error=f"{type(exc).__name__}: {exc}"[:500])
    if 200 <= response.status_code < 300:
        return Outcome(job, ok=True, status_code=response.status_code)
    return Outcome(job, ok=False, status_code=response.status_code, error=f"HTTP {response.status_code}")


# -- recording ---------------------------------------------------------------------------
def _row_update(outcome: Outcome, config: WebhookSettings, now: datetime) -> dict[str, Any]:
    """The new column values of an attempted delivery (the same keys for every row)."""
    job = outcome.job
    attempts = job.attempts + 1
    values: dict[str, Any] = {
        "row_id": job.id,
        "status": "success",
        "attempts": attempts,
        "response_code": outcome.status_code,
        "sent_at": now,
        "updated_at": now,
        "last_error": outcome.error,
        "next_attempt_at": now,
    }
    if outcome.ok:
        pass
    elif job.request_type == TEST_REQUEST_TYPE:
        values["status"] = "failure"  # a test send is tried once and reported to the caller
    elif attempts >= config.max_attempts:
        values["status"] = "dead"
    else:
        values["status"] = "pending"
        values["next_attempt_at"] = now + timedelta(seconds=backoff_s(config, attempts))
    return values


def _claimed(*columns: str) -> Any:
    """``UPDATE webhook_delivery`` of one still-claimed row per parameter set (executemany).

    Rows that are no longer ours (deleted with their endpoint meanwhile) are skipped."""
    table = WebhookDelivery.__table__  # type: ignore[attr-defined]
    return (
        update(table)
        .where(table.c.id == bindparam("row_id"), table.c.status == "sending")
        .values({c: bindparam(c) for c in columns})
    )


def record_outcomes(
    engine: Engine, outcomes: Sequence[Outcome], config: WebhookSettings, now: datetime | None = None
) -> None:
    now = now or utcnow()
    attempted = [o for o in outcomes if o.attempted]
    updates = [_row_update(o, config, now) for o in attempted]
    released = [
        {"row_id": o.job.id, "status": "pending", "next_attempt_at": now} for o in outcomes if not o.attempted
    ]
    with Session(engine) as session:
        connection = session.connection()
        if updates:
            connection.execute(_claimed(*(k for k in updates[0] if k != "row_id")), updates)
        if released:
            connection.execute(_claimed("status", "next_attempt_at"), released)
        _track_endpoints(session, attempted, updates, config, now)
        session.commit()
    for outcome, values in zip(attempted, updates, strict=True):
        if values["status"] == "dead":
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
    """Failure bookkeeping per endpoint (from the attempted deliveries), and automatic disabling."""
    touched: dict[str, list[tuple[Outcome, str]]] = {}
    for outcome, values in zip(outcomes, updates, strict=True):
        if outcome.job.request_type != TEST_REQUEST_TYPE:
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
def deliver_round(engine: Engine, sender: Sender) -> int:
    """One round: claim, send, record. Returns the number of attempts made."""
    runs = claim(engine, sender.config)
    if not runs:
        return 0
    outcomes = sender.send_runs(runs)
    record_outcomes(engine, outcomes, sender.config)
    return sum(o.attempted for o in outcomes)


def send_now(engine: Engine, config: WebhookSettings, delivery_id: str) -> Outcome | None:
    """Send a delivery created claimed (``POST /webhooks/{id}/test``) right away; None if it is
    no longer claimed."""
    job = claimed_job(engine, config, delivery_id)
    if job is None:
        return None
    with make_client(config) as client:
        outcome = send(client, job)
    record_outcomes(engine, [outcome], config)
    return outcome
