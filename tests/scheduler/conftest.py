"""A migrated database and small builders for the boundary and audience tests."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from syncd import migrate
from syncd.db import make_engine, session_scope
from syncd.models import ChangeLog, Company, CompanyPlan, Plan, PlanVersion


@pytest.fixture
def engine(sqlite_url: str) -> Iterator[Engine]:
    engine = make_engine(sqlite_url)
    migrate.upgrade(engine)
    yield engine
    engine.dispose()


def add_plan(engine: Engine, key: str, plan_type: str = "plan", **values: Any) -> tuple[str, str]:
    """A plan with a published version: (plan id, version id)."""
    with session_scope(engine) as session:
        plan = Plan(key=key, name=key.title(), plan_type=plan_type, **values)
        session.add(plan)
        session.flush()
        version = PlanVersion(plan_id=plan.id, version=1, status="published")
        session.add(version)
        session.flush()
        return plan.id, version.id


def add_company(engine: Engine, name: str = "Acme") -> str:
    with session_scope(engine) as session:
        company = Company(name=name)
        session.add(company)
        session.flush()
        return company.id


def assign(engine: Engine, company_id: str, plan: tuple[str, str], role: str = "base", **values: Any) -> None:
    with session_scope(engine) as session:
        session.add(
            CompanyPlan(company_id=company_id, plan_id=plan[0], plan_version_id=plan[1], role=role, **values)
        )


def plans_of(engine: Engine, company_id: str) -> dict[str, tuple[str, str]]:
    """{plan id: (role, source)}"""
    with Session(engine) as session:
        rows = session.exec(select(CompanyPlan).where(col(CompanyPlan.company_id) == company_id)).all()
        return {r.plan_id: (r.role, r.source) for r in rows}


def log_rows(engine: Engine) -> list[tuple[str, str | None, dict[str, Any], datetime]]:
    with Session(engine) as session:
        rows = session.exec(select(ChangeLog).order_by(col(ChangeLog.id))).all()
        return [(r.topic, r.company_id, r.payload, r.created_at) for r in rows]
