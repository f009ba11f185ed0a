"""Group commit for the Stripe inbox: concurrent webhook deliveries share one transaction.

The same pattern as ``POST /batch`` (:mod:`syncd.api.group_commit`): at most one inbox
transaction runs at a time; deliveries that arrive meanwhile queue up and the next
transaction inserts all of them with one statement and one commit (one fsync). Each request
is answered only after the transaction holding its event has committed, so nothing that got
a 2xx is lost. At low load a group is one delivery and nothing waits; under load the group
grows with the time the previous commit took.

If a group's transaction fails, each delivery is retried in a transaction of its own, so one
bad event (an id too long for the column, say) fails alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import structlog
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool

from .inbox import StoredEvent, store_rows

log = structlog.get_logger(__name__)

MAX_GROUP_EVENTS = 1000
MAX_GROUP_BYTES = 16 * 1024 * 1024  # bounds one statement's size (payloads are stored raw)

Row = dict[str, Any]


class InboxCommitter:
    def __init__(self, engine: Engine, stored: Callable[[Sequence[StoredEvent]], None]) -> None:
        self._engine = engine
        self._stored = stored  # called once per committed group (wakes the applier)
        self._queue: list[tuple[Row, asyncio.Future[StoredEvent]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, row: Row) -> StoredEvent:
        """Store ``row`` (an :func:`~.inbox.inbox_row`); returns once it is committed."""
        future: asyncio.Future[StoredEvent] = asyncio.get_running_loop().create_future()
        self._queue.append((row, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.ensure_future(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._queue:
            group = self._take()
            rows = [row for row, _ in group]
            try:
                results = await run_in_threadpool(self._write_group, rows)
            except BaseException as exc:  # handed to every waiting request
                results = [exc] * len(rows)
            for (_, future), result in zip(group, results, strict=True):
                if future.done():  # the request was cancelled (client gone); it committed anyway
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    def _take(self) -> list[tuple[Row, asyncio.Future[StoredEvent]]]:
        count = size = 0
        for row, _ in self._queue:
            size += len(row["payload"])
            if count and (count >= MAX_GROUP_EVENTS or size > MAX_GROUP_BYTES):
                break
            count += 1
        group, self._queue = self._queue[:count], self._queue[count:]
        return group

    def _write_group(self, rows: list[Row]) -> list[StoredEvent | BaseException]:
        try:
            results: list[StoredEvent | BaseException] = list(self._write(rows))
        except Exception as exc:
            if len(rows) == 1:
                return [exc]
            log.warning(
                "stripe_inbox_group_failed_retrying_alone", events=len(rows), error=type(exc).__name__
            )
            results = []
            for row in rows:
                try:
                    results.extend(self._write([row]))
                except Exception as exc:
                    results.append(exc)
        stored = [r for r in results if isinstance(r, StoredEvent)]
        if stored:
            try:
                self._stored(stored)
            except Exception:  # committed already: following must not fail the requests
                log.exception("stripe_inbox_listener_failed")
        return results

    def _write(self, rows: list[Row]) -> list[StoredEvent]:
        with self._engine.begin() as conn:
            return store_rows(conn, rows)
