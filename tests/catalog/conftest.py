"""Fixtures for the catalog tests: a migrated SQLite file database, sessions, write counting.

The Postgres variant creates its own uniquely named database and drops it afterwards; it skips
when Postgres is unreachable, and fails instead when the ``CI`` environment variable is set.
"""

from __future__ import annotations

import copy
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session

from syncd.catalog import Catalog, parse_catalog
from syncd.db import make_engine
from syncd.migrate import upgrade

#: A small catalog touching every section; tests copy and tweak it.
BASE: dict[str, Any] = {
    "settings": {"initial_plan": "free", "fallback_plan": "free", "trial_expiry_plan": "free"},
    "traits": {
        "seats_used": {"entity": "company", "type": "number"},
        "seats_allocated": {"entity": "company", "type": "number"},
        "beta": {"entity": "company", "type": "boolean"},
    },
    "credit_types": [{"key": "ai-credits", "name": "AI credits"}],
    "features": [
        {"key": "api-calls", "name": "API calls", "type": "event", "event": "api-call"},
        {"key": "seats", "name": "Seats", "type": "trait", "trait": "seats_used"},
        {"key": "sso", "name": "SSO", "type": "boolean"},
        {"key": "ai", "name": "AI", "type": "event", "event": "ai-query"},
        {"key": "beta-ui", "name": "Beta UI", "type": "boolean"},
    ],
    "flags": [
        {
            "key": "beta-ui",
            "default": False,
            "rules": [
                {
                    "name": "beta",
                    "priority": 1,
                    "conditions": [{"type": "trait", "trait": "beta", "value": True}],
                    "condition_groups": [
                        {
                            "conditions": [
                                {"type": "plan", "plans": ["pro"]},
                                {"type": "company", "ids": ["c1"]},
                            ]
                        }
                    ],
                },
                {"type": "global_override", "value": False, "name": "kill switch"},
            ],
        },
        {"key": "maintenance", "name": "Maintenance banner", "default": False},
    ],
    "plans": [
        {
            "key": "free",
            "name": "Free",
            "entitlements": {
                "api-calls": {
                    "type": "numeric",
                    "value": 1000,
                    "period": "current_month",
                    "month_reset": "billing_cycle",
                },
                "seats": {"type": "numeric", "value": 3},
            },
        },
        {
            "key": "pro",
            "name": "Pro",
            "trial_days": 14,
            "prices": {"month": 4900, "year": 49000},
            "entitlements": {
                "api-calls": {
                    "type": "numeric",
                    "value": 50000,
                    "period": "current_month",
                    "soft_limit": 40000,
                },
                "seats": {"type": "trait", "trait": "seats_allocated", "price_behavior": "pay_in_advance"},
                "sso": {"type": "boolean", "value": True},
                "ai": {"type": "credit", "credit": "ai-credits", "rate": 2},
            },
            "credit_grants": [{"credit": "ai-credits", "amount": 500, "rollover_percentage": 10}],
            "audience": [{"type": "trait", "trait": "beta", "value": "true"}],
        },
        {
            "key": "analytics",
            "name": "Analytics add-on",
            "type": "add_on",
            "prices": {"month": 1000, "one_time": 5000},
            "entitlements": {"api-calls": {"type": "unlimited"}},
        },
    ],
}


def base_doc() -> dict[str, Any]:
    return copy.deepcopy(BASE)


def make_catalog(doc: dict[str, Any] | None = None) -> Catalog:
    return parse_catalog(base_doc() if doc is None else doc)


@pytest.fixture
def doc() -> dict[str, Any]:
    return base_doc()


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file upgraded to head once; each test gets a copy."""
    path = tmp_path_factory.mktemp("catalog-template") / "template.db"
    eng = make_engine(f"sqlite:///{path}")
    upgrade(eng)
    eng.dispose()
    assert (
        not path.with_name(path.name + "-wal").exists()
        or path.with_name(path.name + "-wal").stat().st_size == 0
    )
    return path


@pytest.fixture
def engine(tmp_path: Path, migrated_sqlite: Path) -> Iterator[Engine]:
    path = tmp_path / "catalog.db"
    shutil.copyfile(migrated_sqlite, path)
    eng = make_engine(f"sqlite:///{path}")
    yield eng
    eng.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as s:
        yield s


class WriteLog:
    """Counts INSERT/UPDATE/DELETE statements sent to an engine."""

    def __init__(self, engine: Engine) -> None:
        self.statements: list[str] = []
        event.listen(engine, "before_cursor_execute", self._record)
        self.engine = engine

    def _record(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        verb = statement.lstrip().split(None, 1)[0].upper()
        if verb in ("INSERT", "UPDATE", "DELETE"):
            self.statements.append(statement)

    def close(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._record)


@pytest.fixture
def writes(engine: Engine) -> Iterator[Callable[[], WriteLog]]:
    logs: list[WriteLog] = []

    def start() -> WriteLog:
        log = WriteLog(engine)
        logs.append(log)
        return log

    yield start
    for log in logs:
        log.close()


@pytest.fixture
def pg_engine(postgres_url: str) -> Iterator[Engine]:
    """A migrated, freshly created Postgres database (the shared ``postgres_url`` fixture)."""
    eng = make_engine(postgres_url, pool_size=2)
    try:
        upgrade(eng)
        yield eng
    finally:
        eng.dispose()
