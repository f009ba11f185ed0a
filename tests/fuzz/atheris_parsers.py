"""Coverage-guided fuzzing (atheris, optional extra ``fuzz``) of the inbound parsers, no database.

    python tests/fuzz/atheris_parsers.py -atheris_runs=200000     # a longer run by hand

Targets: the Stripe-Signature check and event parser (``syncd/stripe_sync``), and the request
models of ``POST /batch``, ``/events`` and ``/event-batch`` followed by the ingest validation of
every event (``syncd/services/ingest.py``) inside a rolled-back SQLite session. Allowed
outcomes are the clear errors those layers raise for bad input (``MalformedEvent``,
pydantic's ``ValidationError`` -> 400, syncd's ``ValidationError`` -> 4xx); anything else
is a crash that atheris reports with the input. ``tests/fuzz/test_atheris.py`` runs a
bounded number of inputs in CI when atheris is installed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import sys

import atheris

# Coverage feedback from syncd's own code only: instrumenting pydantic/sqlalchemy too costs minutes.
with atheris.instrument_imports(include=["syncd"]):
    import pydantic

    from syncd.api.schemas.checks import CaptureBatchBody, CreateEventBatchBody, CreateEventBody
    from syncd.exceptions import ValidationError
    from syncd.services.audit import Actor
    from syncd.services.ingest import RawEvent, ingest
    from syncd.stripe_sync.inbox import MalformedEvent, parse_event
    from syncd.stripe_sync.webhook import verify_signature

_SESSION = None


def _session():  # type: ignore[no-untyped-def]
    """One in-memory SQLite database; each input's writes are rolled back."""
    global _SESSION
    if _SESSION is None:
        from sqlalchemy import create_engine
        from sqlmodel import Session

        from syncd import migrate

        engine = create_engine("sqlite://")
        migrate.upgrade(engine)
        _SESSION = Session(engine)
    return _SESSION


def _ingest(events: list[RawEvent], secret: bool) -> None:
    session = _session()
    try:
        ingest(
            session,
            events,
            secret=secret,
            resolve_company=lambda keys: None,
            subscription_of=lambda company_id: None,
            actor=Actor("system"),
            now=dt.datetime.now(dt.UTC),
        )
    finally:
        session.rollback()


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    choice = fdp.ConsumeIntInRange(0, 4)
    if choice == 0:
        header = fdp.ConsumeUnicodeNoSurrogates(80)
        assert verify_signature(fdp.ConsumeBytes(200), header, ["whsec_fuzz"], 300) in (True, False)
        return
    raw = fdp.ConsumeBytes(fdp.remaining_bytes())
    if choice == 1:
        with contextlib.suppress(MalformedEvent):
            parse_event(raw)
        return
    model = (CaptureBatchBody, CreateEventBody, CreateEventBatchBody)[choice - 2]
    try:
        body = model.model_validate_json(raw or b"{}")
    except pydantic.ValidationError:
        return
    # As the routes build them (syncd/api/routes/runtime.py).
    items = body.events if isinstance(body, CaptureBatchBody | CreateEventBatchBody) else [body]
    events = [
        RawEvent(
            getattr(e, "type", None) or getattr(e, "event_type", ""),
            e.body,
            e.idempotency_key,
            e.sent_at,
            bool(e.trusted_client_clock),
            bool(e.backfill),
        )
        for e in items
    ]
    try:
        _ingest(events, secret=len(raw) % 2 == 0)
    except ValidationError as exc:
        if not 400 <= exc.status < 500:
            raise


def main(argv: list[str]) -> None:
    atheris.Setup(argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
