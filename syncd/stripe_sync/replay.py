"""Catching up on missed webhooks through the Events API.

Events are listed from a stored cursor (the newest ``created`` seen) minus an overlap window,
because events are not listed in a strict order around the cursor second and a webhook that
never arrived may carry an older timestamp than one that did. Every listed event goes through
the inbox, whose primary key de-duplicates against webhook deliveries; applying then happens
as for webhooks. Stripe keeps events for 30 days: a cursor older than 25 days is logged as a
warning, since only a full sweep can fill a longer gap.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import stripe
import structlog
from sqlalchemy.engine import Engine
from sqlmodel import Session

from ..models import SyncCursor, utcnow
from .inbox import store_event
from .mirror import list_json

log = structlog.get_logger(__name__)

CURSOR = "events_api"
DEFAULT_OVERLAP_S = 600
STALE_CURSOR_S = 25 * 86_400
FIRST_RUN_WINDOW_S = 86_400


@dataclass(frozen=True, slots=True)
class ReplayResult:
    listed: int
    stored: int  # new to the inbox (the rest were duplicates)
    cursor: int | None


def read_cursor(engine: Engine, name: str) -> tuple[str | None, datetime | None]:
    """The cursor's value and when it was last written (None, None: never)."""
    with Session(engine) as session:
        row = session.get(SyncCursor, name)
        if row is None:
            return None, None
        return (row.value or None), row.updated_at


def write_cursor(session: Session, name: str, value: str) -> None:
    row = session.get(SyncCursor, name) or SyncCursor(name=name)
    row.value, row.updated_at = value, utcnow()
    session.add(row)


def replay_events(
    engine: Engine,
    client: stripe.StripeClient,
    *,
    overlap_s: int = DEFAULT_OVERLAP_S,
    now_ts: int | None = None,
    batch: int = 500,
    on_progress: Callable[[int], None] | None = None,
) -> ReplayResult:
    """Store every event since ``cursor - overlap`` into the inbox; advance the cursor."""
    now = now_ts if now_ts is not None else int(utcnow().timestamp())
    raw_cursor, last_run = read_cursor(engine, CURSOR)
    cursor = int(raw_cursor) if raw_cursor else None
    # What matters is how long nobody replayed (a quiet account keeps an old cursor value
    # legitimately): past 25 days Stripe is about to drop events syncd never saw.
    if last_run is not None and (utcnow() - last_run).total_seconds() > STALE_CURSOR_S:
        log.warning(
            "stripe_events_cursor_stale",
            cursor=cursor,
            last_replay=last_run.isoformat(),
            age_days=round((utcnow() - last_run).total_seconds() / 86_400, 1),
            hint="Stripe keeps events 30 days; run `syncd reconcile --repair` to fill a longer gap",
        )
    since = (cursor - overlap_s) if cursor is not None else now - FIRST_RUN_WINDOW_S
    params: dict[str, Any] = {"limit": 100, "created": {"gte": max(0, since)}}
    listed = stored = 0
    newest = cursor
    pending: list[dict[str, Any]] = []

    def flush() -> None:
        nonlocal stored
        if not pending:
            return
        with Session(engine) as session:
            conn = session.connection()
            for event in pending:
                raw = json.dumps(event, separators=(",", ":")).encode()
                stored += int(store_event(conn, raw, event, source="events_api").inserted)
            session.commit()
        if on_progress is not None:
            on_progress(len(pending))
        pending.clear()

    for event in list_json(client, "/v1/events", params):  # plain JSON, as a webhook body holds
        listed += 1
        created = int(event.get("created") or 0)
        newest = created if newest is None else max(newest, created)
        pending.append(event)
        if len(pending) >= batch:
            flush()
    flush()
    with Session(engine) as session:
        write_cursor(session, CURSOR, "" if newest is None else str(newest))
        session.commit()
    log.info("stripe_events_replayed", listed=listed, stored=stored, cursor=newest)
    return ReplayResult(listed, stored, newest)
