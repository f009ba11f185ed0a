"""Apply and idempotence on the real PostgreSQL (skips locally without it, fails under CI)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from syncd.catalog import CatalogDiff, apply_catalog, dump, export_catalog, load_catalog, loads
from syncd.db import session_scope
from syncd.models import Company, CompanyPlan, Plan, PlanVersion

from .conftest import make_catalog
from .test_demo import CONFIG

pytestmark = pytest.mark.postgres


def test_apply_is_idempotent_on_postgres(pg_engine: Engine, doc: dict[str, Any]) -> None:
    with session_scope(pg_engine) as session:
        first = apply_catalog(session, make_catalog(doc))
    assert not first.is_empty

    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().split(None, 1)[0].upper() in ("INSERT", "UPDATE", "DELETE"):
            statements.append(statement)

    event.listen(pg_engine, "before_cursor_execute", record)
    try:
        with session_scope(pg_engine) as session:
            second = apply_catalog(session, make_catalog(doc))
    finally:
        event.remove(pg_engine, "before_cursor_execute", record)
    assert second.is_empty and statements == []

    # a company on pro, then an entitlement change: v2 published, the company stays (leave)
    with session_scope(pg_engine) as session:
        pro = session.exec(select(Plan).where(Plan.key == "pro")).one()
        v1 = session.exec(select(PlanVersion).where(PlanVersion.plan_id == pro.id)).one()
        company = Company(name="acme")
        session.add(company)
        session.flush()
        session.add(CompanyPlan(company_id=company.id, plan_id=pro.id, plan_version_id=v1.id))
    doc["plans"][1]["entitlements"]["api-calls"]["value"] = 1
    with session_scope(pg_engine) as session:
        diff = apply_catalog(session, make_catalog(doc))
    assert diff.changes[0].startswith("~ plan pro: entitlements changed -> version 2 (migration: leave")
    with Session(pg_engine) as session:
        statuses = sorted(
            (v.version, v.status)
            for v in session.exec(select(PlanVersion).where(PlanVersion.plan_id == pro.id))
        )
        assert statuses == [(1, "archived"), (2, "published")]
        assert session.exec(select(CompanyPlan)).one().plan_version_id == v1.id
        exported = export_catalog(session)
    with session_scope(pg_engine) as session:
        assert apply_catalog(session, loads(dump(exported))).is_empty


def test_demo_catalog_and_prune_on_postgres(pg_engine: Engine) -> None:
    with session_scope(pg_engine) as session:
        apply_catalog(session, make_catalog())
    with session_scope(pg_engine) as session:
        diff = apply_catalog(session, load_catalog(CONFIG / "catalog.toml"), prune=True)
    assert "- plan analytics" in diff.changes and "- feature beta-ui" in diff.changes
    with session_scope(pg_engine) as session:
        assert apply_catalog(session, load_catalog(CONFIG / "catalog.example.yaml"), prune=True).is_empty


def test_concurrent_applies_are_serialized(pg_engine: Engine, doc: dict[str, Any]) -> None:
    """Two replicas applying at start: the advisory lock makes the second find nothing to do."""
    catalog = make_catalog(doc)
    barrier = threading.Barrier(2)
    results: list[CatalogDiff] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait(timeout=10)
            with session_scope(pg_engine) as session:
                results.append(apply_catalog(session, catalog))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert sorted(d.is_empty for d in results) == [False, True]
    with Session(pg_engine) as session:
        assert len(session.exec(select(Plan)).all()) == 3
