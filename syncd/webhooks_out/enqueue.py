"""Fan change-log batches out into ``webhook_delivery`` rows, once.

Each row's id is derived from (endpoint, change seq, company, event), and rows are inserted
with ``ON CONFLICT DO NOTHING``: publishing the same batch again creates nothing twice.
Deliveries go to *active* endpoints subscribed to the event type; entitlement triggers only
for the features an endpoint lists in ``entitlement_trigger_configs`` (opt-in, as Schematic).

Several ``entitlements.changed`` rows for one company in a batch collapse into one
``entitlements.updated`` at the company's last change (the state is read once, now).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from ..hookspecs import Change
from ..models import Company, WebhookDelivery, WebhookEndpoint
from ..services.changes import ENTITLEMENTS_CHANGED
from ..services.webhooks import REQUEST_TYPES
from ..state import load_companies
from .body import jsonable
from .events import ENTITLEMENTS_UPDATED, OutEvent, domain_body, entitlements_body, envelope
from .limits import LIMIT_TYPES, limit_events

_INSERT_CHUNK = 500


def delivery_id(webhook_id: str, seq: int, event: OutEvent) -> str:
    digest = hashlib.sha256(f"{webhook_id}|{seq}|{event.company_id or ''}|{event.key}".encode()).hexdigest()
    return "whe_" + digest[:32]


@dataclass(frozen=True, slots=True)
class _Endpoint:
    id: str
    types: frozenset[str]
    trigger_features: frozenset[str]

    def wants(self, event: OutEvent) -> bool:
        if event.request_type not in self.types:
            return False
        return event.feature_id is None or event.feature_id in self.trigger_features


def _endpoints(session: Session) -> list[_Endpoint]:
    rows = session.exec(select(WebhookEndpoint).where(col(WebhookEndpoint.status) == "active")).all()
    return [
        _Endpoint(
            e.id,
            frozenset(e.request_types),
            frozenset(c["feature_id"] for c in e.entitlement_trigger_configs if "feature_id" in c),
        )
        for e in rows
    ]


def _state_events(
    session: Session, company_ids: list[str] | None, endpoints: list[_Endpoint], now: datetime
) -> dict[str, list[OutEvent]]:
    """``entitlements.updated`` and limit triggers per company (only what someone subscribes to)."""
    wants_state = any(ENTITLEMENTS_UPDATED in e.types for e in endpoints)
    watched = frozenset(f for e in endpoints if e.types & LIMIT_TYPES for f in e.trigger_features)
    if not (wants_state or watched):
        return {}
    states = load_companies(session, company_ids, now)
    ids = company_ids if company_ids is not None else sorted(states)
    out: dict[str, list[OutEvent]] = {}
    for company_id in ids:
        state = states.get(company_id)
        events: list[OutEvent] = []
        if wants_state:
            wire = state.to_wire() if state is not None else None
            body = jsonable(entitlements_body(company_id, wire, now))
            events.append(
                OutEvent(
                    ENTITLEMENTS_UPDATED,
                    company_id,
                    ENTITLEMENTS_UPDATED,
                    envelope(ENTITLEMENTS_UPDATED, body, company_id),
                )
            )
        if watched and state is not None:
            events.extend(limit_events(session, state, watched, now))
        out[company_id] = events
    return out


def _plan(
    session: Session, changes: Sequence[Change], endpoints: list[_Endpoint], now: datetime
) -> list[tuple[int, list[OutEvent]]]:
    """Events per change seq, in order."""
    planned: dict[int, list[OutEvent]] = {}
    last_change: dict[str, int] = {}
    everyone: int | None = None
    subscribed = frozenset(t for e in endpoints for t in e.types)
    for change in changes:
        if change.topic == ENTITLEMENTS_CHANGED:
            if change.company_id is None:
                everyone = change.seq
            else:
                last_change[change.company_id] = change.seq
        elif change.topic in REQUEST_TYPES and change.topic in subscribed:
            body = jsonable(domain_body(session, change))
            event = OutEvent(
                change.topic, change.company_id, change.topic, envelope(change.topic, body, change.company_id)
            )
            planned.setdefault(change.seq, []).append(event)
    if everyone is not None:
        all_ids = list(session.exec(select(Company.id)).all())
        seqs = {cid: max(everyone, last_change.get(cid, everyone)) for cid in all_ids}
        by_company = _state_events(session, None, endpoints, now)
    else:
        seqs = last_change
        by_company = _state_events(session, sorted(last_change), endpoints, now) if last_change else {}
    for company_id, events in by_company.items():
        if company_id in seqs and events:
            planned.setdefault(seqs[company_id], []).extend(events)
    return sorted(planned.items())


def _insert(session: Session) -> Insert:
    dialect = session.get_bind().dialect.name
    module: Any = postgresql if dialect == "postgresql" else sqlite
    stmt: Insert = module.insert(WebhookDelivery).on_conflict_do_nothing(index_elements=["id"])
    return stmt


def _chunks(rows: list[dict[str, Any]]) -> Iterable[list[dict[str, Any]]]:
    for i in range(0, len(rows), _INSERT_CHUNK):
        yield rows[i : i + _INSERT_CHUNK]


def publish(session: Session, changes: Sequence[Change], now: datetime) -> int:
    """Create the deliveries for a batch of changes (in the caller's transaction)."""
    endpoints = _endpoints(session)
    if not endpoints or not changes:
        return 0
    rows: list[dict[str, Any]] = []
    for seq, events in _plan(session, changes, endpoints, now):
        for endpoint in endpoints:
            wanted = [e for e in events if endpoint.wants(e)]
            for ordinal, event in enumerate(wanted):
                rows.append(
                    {
                        "id": delivery_id(endpoint.id, seq, event),
                        "webhook_id": endpoint.id,
                        "request_type": event.request_type,
                        "payload": event.envelope,
                        "status": "pending",
                        "attempts": 0,
                        "next_attempt_at": now,
                        "created_at": now,
                        "updated_at": now,
                        "company_id": event.company_id,
                        "change_seq": seq,
                        "ordinal": ordinal,
                    }
                )
    created = 0
    for chunk in _chunks(rows):
        created += len(session.exec(_insert(session).values(chunk).returning(col(WebhookDelivery.id))).all())
    return created
