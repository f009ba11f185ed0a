"""Group commit for track ingestion: concurrent ``POST /batch`` requests share a transaction
(the mechanism: :mod:`syncd.groupcommit`).

Each worker runs at most one ingest transaction at a time. Requests that arrive while it
runs queue up, and the next transaction writes all of them together: one idempotency claim,
one usage-event insert, one counter upsert (counters aggregated in memory across the whole
group, so a hot counter row is locked once per transaction instead of once per request),
one change-log insert and one commit (fsync). A request is answered only after the
transaction holding its events has committed: nothing acknowledged is ever lost.

At low load a group is a single request and nothing waits; under load the group grows
with the time the previous commit took, which is what keeps throughput up.

If a group's transaction fails, each of its requests is retried in a transaction of its
own, so one bad request (say, a company deleted meanwhile) fails alone.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import structlog
from sqlalchemy.engine import Engine
from sqlmodel import Session

from .. import groupcommit
from ..engine.wire import Subscription
from ..services.changes import Changed, take_entitlement_changes, usage_only_changes
from ..services.ingest import consume_tracked
from ..services.metering import TrackInput, TrackOutcome, track_batches

log = structlog.get_logger(__name__)

MAX_GROUP_EVENTS = 5000  # bounds one transaction's size (50 SDK batches)


@dataclass(frozen=True, slots=True)
class TrackJob:
    """One request's track events, companies resolved, with what its writes depend on."""

    inputs: Sequence[TrackInput]
    subscriptions: Mapping[str, Subscription | None]
    # (company id, event) -> [(credit type id, consumption rate)]
    credits: Mapping[tuple[str, str], Sequence[tuple[str, float]]] = field(default_factory=dict)


class GroupCommitter(groupcommit.GroupCommitter[TrackJob, TrackOutcome]):
    name = "ingest"

    def __init__(
        self,
        engine: Engine,
        notify: Callable[[Changed], None],
        usage_moved: Callable[[frozenset[str]], None] | None = None,
    ) -> None:
        super().__init__()
        self._engine = engine
        self._notify = notify
        # Usage-only changes skip reading the change log back: the store is told directly.
        self._usage_moved = usage_moved

    def group_size(self, queued: Sequence[TrackJob]) -> int:
        count = size = 0
        for job in queued:
            if count and size + len(job.inputs) > MAX_GROUP_EVENTS:
                break
            count, size = count + 1, size + len(job.inputs)
        return count

    def write(self, jobs: list[TrackJob]) -> list[TrackOutcome]:
        now = dt.datetime.now(dt.UTC)
        subscriptions: dict[str, Subscription | None] = {}
        for job in jobs:
            subscriptions.update(job.subscriptions)
        with Session(self._engine, expire_on_commit=False) as session:
            try:
                outcomes = track_batches(session, [job.inputs for job in jobs], subscriptions, now)
                for job, outcome in zip(jobs, outcomes, strict=True):
                    if job.credits:
                        consume_tracked(session, outcome, _lookup(job.credits), now)
                session.commit()
            except BaseException:
                session.rollback()
                raise
            usage_only = usage_only_changes(session)
            changed = take_entitlement_changes(session)
        if changed is not None:
            try:
                if self._usage_moved is not None and changed != "all" and changed <= usage_only:
                    self._usage_moved(changed)
                else:
                    self._notify(changed)
            except Exception:  # committed already: following must not fail the requests
                log.exception("entitlements_listener_failed")
        return outcomes


def _lookup(
    credits: Mapping[tuple[str, str], Sequence[tuple[str, float]]],
) -> Callable[[str, str], Sequence[tuple[str, float]]]:
    return lambda company_id, event: credits.get((company_id, event), ())
