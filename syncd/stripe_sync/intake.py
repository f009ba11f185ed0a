"""Group commit for the Stripe inbox: concurrent webhook deliveries share one transaction.

The same mechanism as ``POST /batch`` (:mod:`syncd.groupcommit`): at most one inbox
transaction runs at a time; deliveries that arrive meanwhile queue up and the next
transaction inserts all of them with one statement and one commit (one fsync). Each request
is answered only after the transaction holding its event has committed, so nothing that got
a 2xx is lost. At low load a group is one delivery and nothing waits; under load the group
grows with the time the previous commit took.

If a group's transaction fails, each delivery is retried in a transaction of its own, so one
bad event (an id too long for the column, say) fails alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import structlog
from sqlalchemy import text
from sqlalchemy.engine import Engine

from ..groupcommit import GroupCommitter
from .inbox import StoredEvent, store_rows

log = structlog.get_logger(__name__)

NOTIFY = text("SELECT pg_notify('syncd_inbox', '')")  # runtime.INBOX_CHANNEL
MAX_GROUP_EVENTS = 1000
MAX_GROUP_BYTES = 16 * 1024 * 1024  # bounds one statement's size (payloads are stored raw)

Row = dict[str, Any]


class InboxCommitter(GroupCommitter[Row, StoredEvent]):
    name = "stripe_inbox"

    def __init__(
        self,
        engine: Engine,
        stored: Callable[[Sequence[StoredEvent]], None],
        *,
        notify: Callable[[], bool] = lambda: False,
    ) -> None:
        super().__init__()
        self._engine = engine
        self._stored = stored  # called once per committed group (wakes an in-process applier)
        self._notify = notify  # Postgres: wake an applier in another process, at commit

    def group_size(self, queued: Sequence[Row]) -> int:
        count = size = 0
        for row in queued:
            size += len(row["payload"])
            if count and (count >= MAX_GROUP_EVENTS or size > MAX_GROUP_BYTES):
                break
            count += 1
        return count

    def write(self, rows: list[Row]) -> list[StoredEvent]:
        with self._engine.begin() as conn:
            stored = store_rows(conn, rows)
            if self._notify() and any(s.inserted and s.status == "pending" for s in stored):
                conn.execute(NOTIFY)  # delivered with the commit, never before the rows
            return stored

    def committed(self, results: Sequence[StoredEvent | BaseException]) -> None:
        stored = [r for r in results if isinstance(r, StoredEvent)]
        if stored:
            self._stored(stored)
