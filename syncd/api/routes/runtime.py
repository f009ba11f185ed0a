"""The hot path: flag checks (answered from memory) and event ingestion.

``POST /flags/{key}/check``, ``/flags/check``, ``/flags/check-bulk`` read the entitlement
store only; a check never waits on the database unless a user must be looked up for the
first time or the company's snapshot has just crossed a time boundary.
``POST /batch`` (the SDKs' event buffer), ``/events`` and ``/event-batch`` validate the whole
batch, then write it in one transaction.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...engine.wire import CheckFlagResult, EventUsage, Preflight, format_ts
from ...exceptions import ConflictError, NotFoundError, ValidationError
from ...services.ingest import IngestResult, RawEvent, ingest, track_input, validate
from ...services.metering import TrackOutcome
from ...state import EntitlementStore, KeyConflictError
from ..auth import principal, request_actor
from ..group_commit import GroupCommitter, TrackJob
from ..http import ok, read_body, run_db
from ..schemas.checks import (
    CaptureBatchBody,
    CheckFlagBody,
    CheckFlagsBulkBody,
    CreateEventBatchBody,
    CreateEventBody,
    PreflightBody,
)
from ..spec import operation

MAX_CAPTURE_BATCH = 100


def check_view(result: CheckFlagResult) -> dict[str, Any]:
    """A result as ``CheckFlagResponseData``."""
    ent = result.entitlement
    return {
        "flag": result.flag_key,
        "value": result.value,
        "reason": result.reason,
        "flag_id": result.flag_id,
        "rule_id": result.rule_id,
        "rule_type": result.rule_type,
        "company_id": result.company_id,
        "user_id": result.user_id,
        "error": result.err,
        "entitlement": None if ent is None else ent.to_wire(),
        "feature_allocation": result.feature_allocation,
        "feature_usage": result.feature_usage,
        "feature_usage_event": result.feature_usage_event,
        "feature_usage_period": result.feature_usage_period,
        "feature_usage_reset_at": None
        if result.feature_usage_reset_at is None
        else format_ts(result.feature_usage_reset_at),
    }


def _preflight(body: PreflightBody | None) -> Preflight | None:
    if body is None:
        return None
    usage = body.event_usage
    return Preflight(
        usage=body.usage,
        event_usage=None if usage is None else EventUsage(usage.event_subtype, usage.quantity),
        credit_cost=body.credit_cost,
    )


def _store(request: Request) -> EntitlementStore:
    store: EntitlementStore = request.app.state.daemon.store
    return store


def _conflict(exc: KeyConflictError) -> ConflictError:
    return ConflictError(str(exc), code="key_conflict")


async def _call(fn: Any, needs_db: bool, *args: Any) -> Any:
    # A user seen for the first time is read from the database: keep that off the event loop.
    return await run_in_threadpool(fn, *args) if needs_db else fn(*args)


@operation(summary="Check one flag for a company and/or user", body=CheckFlagBody)
async def check_flag(request: Request) -> Response:
    body = await read_body(request, CheckFlagBody)
    key = request.path_params["key"]
    store = _store(request)
    if key not in store.flags():
        raise NotFoundError(f"flag {key!r} not found", code="flag_not_found", flag=key)
    try:
        result = await _call(
            store.check, bool(body.user), body.company, body.user, key, _preflight(body.preflight)
        )
    except KeyConflictError as exc:
        raise _conflict(exc) from None
    _count(request, result)
    return ok(check_view(result), {"key": key})


def _count(request: Request, result: CheckFlagResult) -> None:
    request.app.state.daemon.metrics.record_check(result.rule_type, result.value)


def _checks_data(request: Request, store: EntitlementStore, body: CheckFlagBody) -> dict[str, Any]:
    try:
        results = store.check_all(body.company, body.user)
    except KeyConflictError as exc:
        raise _conflict(exc) from None
    for result in results:
        _count(request, result)
    data: dict[str, Any] = {"flags": [check_view(r) for r in results], "credit_spend_policies": []}
    company_id = store.resolve_company(body.company)
    company = store.company(company_id) if company_id else None
    view = store.view
    if company is not None and view is not None and company.base_plan_id:
        data["plan"] = {"id": company.base_plan_id, "name": view.plan_names.get(company.base_plan_id, "")}
        data["credit_balances"] = {
            credit: {"remaining": bal, "reserved": 0.0, "settled": bal, "postpaid": False}
            for credit, bal in company.credit_balances.items()
        }
    return data


@operation(summary="Check every flag for a company and/or user", body=CheckFlagBody)
async def check_flags(request: Request) -> Response:
    body = await read_body(request, CheckFlagBody)
    if body.preflight is not None:
        raise ValidationError("preflight applies to single-flag checks only", code="invalid_body")
    store = _store(request)
    data = await _call(_checks_data, bool(body.user), request, store, body)
    return ok(data)


@operation(summary="Check every flag for several contexts", body=CheckFlagsBulkBody)
async def check_flags_bulk(request: Request) -> Response:
    body = await read_body(request, CheckFlagsBulkBody)
    store = _store(request)
    needs_db = any(ctx.user for ctx in body.contexts)

    def all_contexts() -> list[dict[str, Any]]:
        return [_checks_data(request, store, ctx) for ctx in body.contexts]

    return ok({"data": await _call(all_contexts, needs_db)})


# --- events -----------------------------------------------------------------------------
async def _ingest(request: Request, events: Sequence[RawEvent]) -> IngestResult:
    store = _store(request)
    who = principal(request)
    secret = who is not None and who.kind == "secret"
    actor = request_actor(request)
    now = dt.datetime.now(dt.UTC)

    def resolve(keys: Mapping[str, str]) -> str | None:
        try:
            return store.resolve_company(keys)
        except KeyConflictError as exc:
            raise _conflict(exc) from None

    def subscription_of(company_id: str) -> Any:
        company = store.company_definition(company_id)
        return None if company is None else company.subscription

    def credits_of(company_id: str, event: str) -> list[tuple[str, float]]:
        company = store.company_definition(company_id)
        if company is None:
            return []
        return [
            (e.credit_id, 1.0 if e.consumption_rate is None else e.consumption_rate)
            for e in company.entitlements
            if e.value_type == "credit" and e.event_subtype == event and e.credit_id
        ]

    def group_job() -> tuple[TrackJob | None, int]:
        """Track-only batches of known companies are written by the group committer."""
        batch = validate(events, secret=secret, now=now)
        if batch.identifies:
            return None, batch.flag_checks
        inputs = []
        for track in batch.tracks:
            company_id = resolve(track.company)
            if company_id is None:  # a new company is created in the request's own transaction
                return None, batch.flag_checks
            inputs.append(track_input(track, company_id))
        companies = {t.company_id for t in inputs}
        pairs = {(t.company_id, t.event_subtype) for t in inputs}
        credits = {pair: found for pair in pairs if (found := credits_of(*pair))}
        return TrackJob(inputs, {cid: subscription_of(cid) for cid in companies}, credits), batch.flag_checks

    job, flag_checks = await run_in_threadpool(group_job)
    if job is not None:
        committer: GroupCommitter = request.app.state.group_committer
        outcome = await committer.submit(job) if job.inputs else TrackOutcome(0, 0)
        return IngestResult(outcome, 0, flag_checks)

    def work(session: Session) -> IngestResult:
        return ingest(
            session,
            events,
            secret=secret,
            resolve_company=resolve,
            subscription_of=subscription_of,
            actor=actor,
            now=now,
            credits_of=credits_of,
        )

    return await run_db(request, work)


def _raw(event: CreateEventBody) -> RawEvent:
    return RawEvent(
        event.event_type,
        event.body,
        event.idempotency_key,
        event.sent_at,
        bool(event.trusted_client_clock),
        bool(event.backfill),
    )


def _raw_event_view(request: Request) -> dict[str, Any]:
    client = request.client
    return {
        "captured_at": dt.datetime.now(dt.UTC).isoformat(),
        "remote_ip": client.host if client else "",
        "user_agent": request.headers.get("user-agent", ""),
    }


@operation(summary="The SDK event buffer: identify/track/flag_check, at most 100", body=CaptureBatchBody)
async def capture_batch(request: Request) -> Response:
    body = await read_body(request, CaptureBatchBody)
    if len(body.events) > MAX_CAPTURE_BATCH:
        raise ValidationError("batch too large", code="batch_too_large", max_size=MAX_CAPTURE_BATCH)
    events = [
        RawEvent(e.type, e.body, e.idempotency_key, e.sent_at, bool(e.trusted_client_clock), bool(e.backfill))
        for e in body.events
    ]
    result = await _ingest(request, events)
    return ok(
        {
            "accepted": result.tracked.accepted + result.identified + result.flag_checks,
            "duplicates": result.tracked.duplicates,
        }
    )


@operation(body=CreateEventBody, status=201)
async def create_event(request: Request) -> Response:
    body = await read_body(request, CreateEventBody)
    await _ingest(request, [_raw(body)])
    return ok(_raw_event_view(request), status=201)


@operation(body=CreateEventBatchBody, status=201)
async def create_event_batch(request: Request) -> Response:
    body = await read_body(request, CreateEventBatchBody)
    await _ingest(request, [_raw(e) for e in body.events])
    view = _raw_event_view(request)
    return ok({"events": [view for _ in body.events]}, status=201)


routes = [
    Route("/flags/check", check_flags, methods=["POST"]),
    Route("/flags/check-bulk", check_flags_bulk, methods=["POST"]),
    Route("/flags/{key}/check", check_flag, methods=["POST"]),
    Route("/batch", capture_batch, methods=["POST"]),
    Route("/events", create_event, methods=["POST"]),
    Route("/event-batch", create_event_batch, methods=["POST"]),
]
