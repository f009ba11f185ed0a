"""Export: database -> catalog -> file -> catalog, with no changes on re-apply."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from syncd.catalog import Catalog, apply_catalog, dump, export_catalog, load_catalog, loads, plan_changes
from syncd.catalog.export import to_document
from syncd.db import session_scope
from syncd.exceptions import CatalogError
from syncd.models import Flag, Plan, TraitDefinition

from .conftest import WriteLog, make_catalog


def export(engine: Engine) -> Catalog:
    with Session(engine) as session:
        return export_catalog(session)


@pytest.mark.parametrize("fmt", ["toml", "yaml"])
def test_export_round_trip_reports_no_changes(
    engine: Engine, doc: dict[str, Any], writes: Callable[[], WriteLog], tmp_path: Path, fmt: str
) -> None:
    with session_scope(engine) as session:
        apply_catalog(session, make_catalog(doc))
    path = tmp_path / f"exported.{fmt}"
    path.write_text(dump(export(engine), fmt))  # type: ignore[arg-type]
    reloaded = load_catalog(path)
    log = writes()
    with session_scope(engine) as session:
        assert plan_changes(session, reloaded).is_empty
        diff = apply_catalog(session, reloaded, prune=True)
    assert diff.is_empty and diff.kept == []
    assert log.statements == []


def test_export_after_versioning_and_edits_still_round_trips(engine: Engine, doc: dict[str, Any]) -> None:
    with session_scope(engine) as session:
        apply_catalog(session, make_catalog(doc))
    doc["plans"][1]["entitlements"]["api-calls"]["value"] = 1
    doc["flags"][0]["rules"][0]["conditions"].append({"type": "plan_version", "versions": ["pro@1"]})
    doc["flags"][0]["rules"][0]["conditions"].append(
        {"type": "metric", "event": "api-call", "operator": "gte", "value": 10, "period": "current_week"}
    )
    doc["plans"][0]["audience"] = [{"type": "base_plan", "operator": "is_empty"}]
    with session_scope(engine) as session:
        apply_catalog(session, make_catalog(doc))
    exported = export(engine)
    for fmt in ("toml", "yaml"):
        with Session(engine) as session:
            assert plan_changes(session, loads(dump(exported, fmt), fmt)).is_empty


def test_export_into_a_fresh_database_reproduces_the_catalog(
    engine: Engine, doc: dict[str, Any], tmp_path: Path, migrated_sqlite: Path
) -> None:
    import shutil

    from syncd.db import make_engine

    with session_scope(engine) as session:
        apply_catalog(session, make_catalog(doc))
    first = export(engine)
    other_path = tmp_path / "other.db"
    shutil.copyfile(migrated_sqlite, other_path)
    other = make_engine(f"sqlite:///{other_path}")
    try:
        with session_scope(other) as session:
            apply_catalog(session, loads(dump(first)))
        assert export(other) == first
    finally:
        other.dispose()


def test_export_content(engine: Engine, doc: dict[str, Any]) -> None:
    with session_scope(engine) as session:
        apply_catalog(session, make_catalog(doc))
        session.add(Plan(key="acme-custom", name="Acme", is_custom=True))
        session.add(TraitDefinition(entity_type="company", name="role"))
        session.add(TraitDefinition(entity_type="user", name="role"))
    exported = export(engine)
    assert [p.key for p in exported.plans] == ["free", "pro", "analytics"]  # custom plans are not catalog
    assert exported.traits["company:role"].name == "role" and exported.traits["user:role"].entity == "user"
    assert exported.traits["beta"].name is None
    flags = {f.key: f for f in exported.flags}
    assert set(flags) == {"beta-ui", "maintenance"}  # features' default flags are implied
    assert flags["maintenance"].name == "Maintenance banner"
    assert flags["beta-ui"].name is None and [r.type for r in flags["beta-ui"].rules] == [
        "global_override",
        "standard",
    ]
    document = to_document(exported)
    assert "audience" not in document["plans"][0] and "credit_grants" not in document["plans"][0]
    assert next(iter(document["plans"][1]["entitlements"]["seats"])) == "type"
    assert loads(dump(exported)) == exported
    assert loads(dump(exported, "yaml"), "yaml") == exported
    with Session(engine) as session:
        assert plan_changes(session, loads(dump(exported))).is_empty


def test_export_of_a_renamed_feature_flag(engine: Engine, doc: dict[str, Any]) -> None:
    with session_scope(engine) as session:
        apply_catalog(session, make_catalog(doc))
        flag = session.exec(select(Flag).where(Flag.key == "sso")).one()
        flag.name = "SSO gate"
    exported = export(engine)
    (sso,) = [f for f in exported.flags if f.key == "sso"]
    assert (sso.name, sso.description, sso.default) == ("SSO gate", None, False)


def test_export_of_an_empty_database() -> None:
    assert to_document(Catalog()) == {
        "settings": {
            "trial_payment_method_required": False,
            "prevent_downgrades_when_over_limit": True,
            "prevent_self_service_downgrade": False,
            "scheduled_downgrade_behavior": "none",
            "proration_behavior": "create_prorations",
        }
    }


def test_export_refuses_what_a_file_cannot_express(engine: Engine, doc: dict[str, Any]) -> None:
    from syncd.models import Feature

    with session_scope(engine) as session:
        session.add(Feature(key="seat-licenses", name="Licenses", feature_type="license"))
    with pytest.raises(CatalogError, match=r"feature 'seat-licenses' in the database cannot be expressed"):
        export(engine)


def test_dump_rejects_unknown_formats() -> None:
    with pytest.raises(CatalogError, match="unknown catalog format 'json'"):
        dump(Catalog(), "json")  # type: ignore[arg-type]
