"""Events from the SDKs (identify, track, flag_check) validated as a whole, then applied.

A batch is all or nothing: every event is validated before anything is written, so a bad
event rejects its batch with a 400 that names it, and a good batch is one transaction.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pydantic
from sqlmodel import Session

from ..engine.wire import Subscription, parse_ts
from ..exceptions import ValidationError
from . import companies, users
from .audit import Actor
from .credits import consume_credits
from .metering import TrackInput, TrackOutcome, track_events

EVENT_TYPES = ("identify", "track", "flag_check")


class _Strict(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(strict=True, extra="ignore")


class _Track(_Strict):
    event: str = pydantic.Field(min_length=1, max_length=255)
    company: dict[str, str] | None = None
    user: dict[str, str] | None = None
    quantity: int | None = None


class _IdentifyCompany(_Strict):
    keys: dict[str, str]
    name: str | None = None
    traits: dict[str, Any] | None = None


class _Identify(_Strict):
    keys: dict[str, str]
    name: str | None = None
    traits: dict[str, Any] | None = None
    company: _IdentifyCompany | None = None


@dataclass(frozen=True, slots=True)
class RawEvent:
    type: str
    body: Mapping[str, Any]
    idempotency_key: str | None = None
    sent_at: str | None = None
    trusted_client_clock: bool = False
    backfill: bool = False


@dataclass(frozen=True, slots=True)
class IngestResult:
    tracked: TrackOutcome
    identified: int
    flag_checks: int


CompanyResolver = Callable[[Mapping[str, str]], str | None]
SubscriptionOf = Callable[[str], Subscription | None]
# (company id, event) -> [(credit type id, consumption rate)] of the credit entitlements it burns.
CreditsOf = Callable[[str, str], Sequence[tuple[str, float]]]


def _no_credits(company_id: str, event: str) -> Sequence[tuple[str, float]]:
    return ()


def _fail(index: int, message: str, code: str) -> ValidationError:
    return ValidationError(f"event {index}: {message}", code=code, index=index)


def _parse(index: int, model: type[pydantic.BaseModel], body: Mapping[str, Any]) -> Any:
    try:
        return model.model_validate(dict(body))
    except pydantic.ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise _fail(index, f"body.{where}: {first['msg']}", "invalid_event") from None


def _occurred_at(index: int, event: RawEvent, secret: bool, now: dt.datetime) -> dt.datetime:
    if not (event.trusted_client_clock and event.sent_at):
        return now
    if not secret:
        raise _fail(index, "trusted_client_clock needs a secret API key", "secret_key_required")
    try:
        return parse_ts(event.sent_at)
    except ValueError:
        raise _fail(index, "sent_at is not an RFC 3339 timestamp", "invalid_event") from None


@dataclass(frozen=True, slots=True)
class ValidatedTrack:
    index: int
    event: RawEvent
    company: dict[str, str]
    name: str
    quantity: int
    occurred_at: dt.datetime


@dataclass(frozen=True, slots=True)
class Validated:
    """A batch that passed validation: nothing of it is written yet."""

    tracks: list[ValidatedTrack]
    identifies: list[_Identify]
    flag_checks: int


def validate(events: Sequence[RawEvent], *, secret: bool, now: dt.datetime) -> Validated:
    """Check every event of a batch; raises ValidationError naming the first bad one."""
    tracks: list[ValidatedTrack] = []
    identifies: list[_Identify] = []
    checks = 0
    for i, event in enumerate(events):
        if event.type not in EVENT_TYPES:
            raise _fail(
                i, f"unknown event type {event.type!r}; use one of {', '.join(EVENT_TYPES)}", "invalid_event"
            )
        if event.backfill and not secret:
            raise _fail(i, "backfill needs a secret API key", "secret_key_required")
        if event.type == "track":
            body = _parse(i, _Track, event.body)
            if not body.company:
                raise _fail(i, "a track event needs company keys", "invalid_event")
            if body.quantity is not None and body.quantity < 0 and not secret:
                raise _fail(i, "a negative quantity needs a secret API key", "secret_key_required")
            quantity = 1 if body.quantity is None else body.quantity
            occurred_at = _occurred_at(i, event, secret, now)
            tracks.append(ValidatedTrack(i, event, body.company, body.event, quantity, occurred_at))
        elif event.type == "identify":
            identifies.append(_parse(i, _Identify, event.body))
        else:
            checks += 1  # flag_check events are accepted for compatibility; syncd logs its own checks
    return Validated(tracks, identifies, checks)


def track_input(track: ValidatedTrack, company_id: str) -> TrackInput:
    return TrackInput(
        company_id=company_id,
        event_subtype=track.name,
        quantity=track.quantity,
        occurred_at=track.occurred_at,
        idempotency_key=track.event.idempotency_key,
        backfill=track.event.backfill,
    )


def ingest(
    session: Session,
    events: Sequence[RawEvent],
    *,
    secret: bool,
    resolve_company: CompanyResolver,
    subscription_of: SubscriptionOf,
    actor: Actor,
    now: dt.datetime,
    credits_of: CreditsOf = _no_credits,
) -> IngestResult:
    """Validate every event, then apply them in one transaction."""
    batch = validate(events, secret=secret, now=now)
    for ident in batch.identifies:
        if ident.company is not None:
            companies.upsert_company(
                session,
                keys=ident.company.keys,
                name=ident.company.name,
                traits=ident.company.traits,
                actor=actor,
            )
        users.upsert_user(
            session,
            keys=ident.keys,
            name=ident.name,
            traits=ident.traits,
            company=ident.company.keys if ident.company else None,
            actor=actor,
        )

    inputs: list[TrackInput] = []
    for track in batch.tracks:
        company_id = resolve_company(track.company)
        if company_id is None:
            # First sight of these keys: the company is created, so the usage is never lost.
            company, _ = companies.upsert_company(session, keys=track.company, actor=actor)
            company_id = company.id
        inputs.append(track_input(track, company_id))
    subs = {t.company_id: subscription_of(t.company_id) for t in inputs}
    outcome = track_events(session, inputs, subs, now) if inputs else TrackOutcome(0, 0)
    consume_tracked(session, outcome, credits_of, now)
    return IngestResult(outcome, len(batch.identifies), batch.flag_checks)


def consume_tracked(session: Session, outcome: TrackOutcome, credits_of: CreditsOf, now: dt.datetime) -> None:
    """Burn the credits the accepted events cost."""
    for tracked in outcome.events:
        for credit_id, rate in credits_of(tracked.company_id, tracked.event_subtype):
            consume_credits(session, tracked.company_id, credit_id, tracked.quantity, rate, now)
