"""Fixtures for outbound webhooks: a migrated database, a live receiver, fast retry settings."""

from __future__ import annotations

import datetime as dt
import secrets
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlmodel import Session, col, func, select

from syncd import migrate
from syncd.db import make_engine, session_scope
from syncd.hookspecs import Change
from syncd.models import ChangeLog, WebhookDelivery, WebhookEndpoint, utcnow
from syncd.services import webhooks
from syncd.services.changes import expand
from syncd.webhooks_out.config import WebhookSettings
from syncd.webhooks_out.delivery import OPEN, Sender, deliver_round
from syncd.webhooks_out.enqueue import publish

from ..conftest import PG_ADMIN_URL, _pg_admin, unavailable
from .receiver import Receiver

FAST = WebhookSettings(
    max_attempts=3,
    backoff_initial_s=0.05,
    backoff_max_s=0.2,
    timeout_s=2.0,
    claim_ttl_s=30.0,
    poll_interval_s=0.05,
)


@pytest.fixture
def engine(sqlite_url: str) -> Iterator[Engine]:
    """SQLite: most behaviour does not depend on the backend."""
    engine = make_engine(sqlite_url)
    migrate.upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A migrated Postgres database to copy: a copy is much faster than migrating each time."""
    admin = _pg_admin()
    try:
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        unavailable("PostgreSQL", str(exc).splitlines()[0])
    name = f"syncd_wh_tpl_{secrets.token_hex(4)}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = make_engine(PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}")
    migrate.upgrade(engine)
    engine.dispose()
    try:
        yield name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def any_engine(request: pytest.FixtureRequest, sqlite_url: str) -> Iterator[Engine]:
    """SQLite and Postgres: for what the SQL itself decides (claims, conflicts, ordering)."""
    if request.param == "sqlite":
        engine = make_engine(sqlite_url)
        migrate.upgrade(engine)
        yield engine
        engine.dispose()
        return
    template: str = request.getfixturevalue("pg_template")
    admin = _pg_admin()
    name = f"syncd_wh_{secrets.token_hex(6)}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    engine = make_engine(PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}")
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver().start()
    yield server
    server.stop()


def add_endpoint(engine: Engine, url: str, types: Sequence[str], **kwargs: Any) -> WebhookEndpoint:
    with session_scope(engine) as session:
        endpoint = webhooks.create_webhook(session, name="hook", url=url, request_types=types, **kwargs)
        session.flush()
        session.expunge(endpoint)
    return endpoint


def changes_after(engine: Engine, seq: int = 0) -> list[Change]:
    with Session(engine) as session:
        rows = session.exec(select(ChangeLog).where(col(ChangeLog.id) > seq).order_by(col(ChangeLog.id)))
        # As the publish pump hands them to adapters: a usage.changed row expanded per company.
        return [
            Change(r.id or 0, topic, cid, r.created_at, dict(payload))
            for r in rows
            for topic, cid, payload in expand(r.topic, r.company_id, r.payload)
        ]


def publish_changes(engine: Engine, changes: Sequence[Change], now: dt.datetime | None = None) -> int:
    with session_scope(engine) as session:
        return publish(session, changes, now or utcnow())


def open_count(engine: Engine) -> int:
    with Session(engine) as session:
        return session.exec(
            select(func.count()).select_from(WebhookDelivery).where(col(WebhookDelivery.status).in_(OPEN))
        ).one()


def drain(engine: Engine, config: WebhookSettings = FAST, idle: float = 0.6, timeout: float = 20.0) -> int:
    """Run delivery rounds until nothing is open (pending or claimed), or nothing has been
    attempted for ``idle`` seconds (e.g. the endpoint is disabled); returns attempts made."""
    made = 0
    deadline = time.monotonic() + timeout
    idle_since: float | None = None
    with Sender(config) as sender:
        while open_count(engine):
            if time.monotonic() > deadline:
                raise AssertionError(f"{open_count(engine)} deliveries still open")
            attempts = deliver_round(engine, sender)
            made += attempts
            if attempts:
                idle_since = None
                continue
            idle_since = idle_since or time.monotonic()
            if time.monotonic() - idle_since > idle:
                break
            time.sleep(0.02)
    return made


def deliveries(engine: Engine, webhook_id: str | None = None) -> list[WebhookDelivery]:
    with Session(engine) as session:
        query = select(WebhookDelivery).order_by(
            col(WebhookDelivery.change_seq), col(WebhookDelivery.ordinal)
        )
        if webhook_id:
            query = query.where(col(WebhookDelivery.webhook_id) == webhook_id)
        return list(session.exec(query).all())
