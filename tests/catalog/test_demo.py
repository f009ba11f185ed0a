"""The shipped demo catalog: config/catalog.toml and its commented YAML twin."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from syncd.catalog import apply_catalog, dump, export_catalog, load_catalog, loads
from syncd.db import session_scope
from syncd.models import CatalogSettingsRow, Plan

from .conftest import WriteLog

CONFIG = Path(__file__).resolve().parents[2] / "config"


def test_toml_and_yaml_demo_catalogs_are_the_same() -> None:
    toml = load_catalog(CONFIG / "catalog.toml")
    yaml = load_catalog(CONFIG / "catalog.example.yaml")
    assert toml == yaml


def test_demo_catalog_contents() -> None:
    catalog = load_catalog(CONFIG / "catalog.toml")
    plans = {p.key: p for p in catalog.plans}
    assert [k for k, p in plans.items() if p.type == "plan"] == ["free", "pro", "enterprise"]
    assert [k for k, p in plans.items() if p.type == "add_on"] == ["advanced-analytics"]
    for key in ("pro", "enterprise"):
        prices = plans[key].prices
        assert prices is not None and prices.month and prices.year
    assert plans["pro"].trial_days
    assert plans["enterprise"].entitlements["sso"].type == "boolean"
    api = plans["pro"].entitlements["api-calls"]
    assert (api.type, api.period, api.month_reset) == ("numeric", "current_month", "billing_cycle")  # type: ignore[union-attr]
    features = {f.key: f for f in catalog.features}
    assert features["seats"].type == "trait" and features["seats"].trait == "seats_used"
    assert any(p.entitlements.get("ai-assistant", None) is not None for p in plans.values())
    flag = next(f for f in catalog.flags if f.key == "new-dashboard")
    assert flag.rules[0].conditions[0].trait == "beta"
    settings = catalog.settings
    assert (settings.initial_plan, settings.fallback_plan) == ("free", "free")
    assert settings.scheduled_downgrade_behavior == "end_of_billing_period"


def test_demo_catalog_applies_idempotently(engine: Engine, writes: Callable[[], WriteLog]) -> None:
    catalog = load_catalog(CONFIG / "catalog.toml")
    with session_scope(engine) as session:
        diff = apply_catalog(session, catalog)
    assert "+ plan enterprise: plan, version 1 published" in diff.changes
    log = writes()
    with session_scope(engine) as session:
        assert apply_catalog(session, load_catalog(CONFIG / "catalog.example.yaml")).is_empty
    assert log.statements == []
    with Session(engine) as session:
        settings = session.get(CatalogSettingsRow, 1)
        free = session.exec(select(Plan).where(Plan.key == "free")).one()
        assert settings is not None and settings.fallback_plan_id == free.id
        exported = export_catalog(session)
    for fmt in ("toml", "yaml"):
        with session_scope(engine) as session:
            assert apply_catalog(session, loads(dump(exported, fmt), fmt)).is_empty


def test_demo_catalog_dump_is_stable() -> None:
    catalog = load_catalog(CONFIG / "catalog.toml")
    for fmt in ("toml", "yaml"):
        assert loads(dump(catalog, fmt), fmt) == catalog
