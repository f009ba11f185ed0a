"""Group commit: concurrent requests share one transaction, each answered after its commit.

A writer runs at most one transaction at a time. Requests that arrive while it runs queue
up, and the next transaction writes all of them together: one statement per table and one
commit (one fsync) for the group. A request is answered only after the transaction holding
its work has committed, so nothing acknowledged is ever lost. At low load a group is a
single request and nothing waits; under load the group grows with the time the previous
commit took, which is what keeps throughput up.

If a group's transaction fails, each of its requests is retried in a transaction of its
own, so one bad request fails alone.

Subclasses say how a group is written (:meth:`GroupCommitter.write`) and how large one may
grow (:meth:`GroupCommitter.group_size`); ``POST /batch`` ingestion and the Stripe webhook
intake are the two.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Generic, TypeVar

import structlog
from starlette.concurrency import run_in_threadpool

log = structlog.get_logger(__name__)

Job = TypeVar("Job")
Result = TypeVar("Result")


class GroupCommitter(ABC, Generic[Job, Result]):
    """Queue jobs from the event loop; write them in groups on a worker thread."""

    name = "group"  # for the log

    def __init__(self) -> None:
        self._queue: list[tuple[Job, asyncio.Future[Result]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, job: Job) -> Result:
        """Write ``job`` (with whatever else is queued); returns once it is committed."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._queue.append((job, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.ensure_future(self._drain())
        return await future

    def group_size(self, queued: Sequence[Job]) -> int:
        """How many jobs from the head of the queue go into the next group (at least one)."""
        return len(queued)

    @abstractmethod
    def write(self, jobs: list[Job]) -> list[Result]:
        """Write and commit ``jobs`` in one transaction; one result per job, in order."""

    def committed(self, results: Sequence[Result | BaseException]) -> None:
        """Called on the worker thread after a group (and any retries) finished."""

    async def _drain(self) -> None:
        while self._queue:
            count = max(1, self.group_size([job for job, _ in self._queue]))
            group, self._queue = self._queue[:count], self._queue[count:]
            jobs = [job for job, _ in group]
            try:
                results = await run_in_threadpool(self._write_group, jobs)
            except BaseException as exc:  # handed to every waiting request
                results = [exc] * len(jobs)
            for (_, future), result in zip(group, results, strict=True):
                if future.done():  # the request was cancelled (client gone); it committed anyway
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    def _write_group(self, jobs: list[Job]) -> list[Result | BaseException]:
        results: list[Result | BaseException]
        try:
            results = list(self.write(jobs))
        except Exception as exc:
            if len(jobs) == 1:
                results = [exc]
            else:
                log.warning(
                    "group_commit_failed_retrying_alone",
                    writer=self.name,
                    jobs=len(jobs),
                    error=type(exc).__name__,
                )
                results = []
                for job in jobs:
                    try:
                        results.extend(self.write([job]))
                    except Exception as exc:
                        results.append(exc)
        try:
            self.committed(results)
        except Exception:  # committed already: following must not fail the requests
            log.exception("group_commit_listener_failed", writer=self.name)
        return results
