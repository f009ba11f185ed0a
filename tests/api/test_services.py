"""The service layer directly (no HTTP): the seam, initial plans, traits, keys, cascades, audit."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlmodel import Session, col, select

from syncd import migrate
from syncd.db import make_engine
from syncd.exceptions import ConflictError, ValidationError
from syncd.models import (
    AuditLog,
    CatalogSettingsRow,
    CompanyOverride,
    CompanyPlan,
    PlanChange,
    PlanEntitlement,
    Rule,
    TraitDefinition,
)
from syncd.services import (
    ALL,
    Actor,
    Page,
    companies,
    entitlements_changed,
    features,
    flags,
    overrides,
    plans,
    take_entitlement_changes,
)
from syncd.services import entitlements as plan_entitlements
from syncd.services.changes import peek_entitlement_changes
from syncd.services.inputs import EntitlementValue, RuleInput
from syncd.services.traits import infer_trait_type


@pytest.fixture
def session(database_url: str) -> Iterator[Session]:
    engine = make_engine(database_url)
    migrate.upgrade(engine)
    with Session(engine, expire_on_commit=False) as s:
        yield s
    engine.dispose()


def test_entitlements_changed_seam(session: Session) -> None:
    assert take_entitlement_changes(session) is None
    entitlements_changed(session, ["comp_a"])
    entitlements_changed(session, ["comp_b", "comp_a"])
    assert peek_entitlement_changes(session) == frozenset({"comp_a", "comp_b"})
    entitlements_changed(session, ALL)
    entitlements_changed(session, ["comp_c"])
    assert take_entitlement_changes(session) == ALL
    assert take_entitlement_changes(session) is None


def test_new_company_gets_the_initial_plan(session: Session) -> None:
    plan = plans.create_plan(session, name="Free", plan_type="plan")
    session.add(CatalogSettingsRow(initial_plan_id=plan.id))
    session.flush()
    company, created = companies.upsert_company(session, keys={"customer_id": "c1"})
    assert created
    row = session.exec(select(CompanyPlan).where(col(CompanyPlan.company_id) == company.id)).one()
    assert (row.plan_id, row.source) == (plan.id, "initial")
    change = session.exec(select(PlanChange).where(col(PlanChange.company_id) == company.id)).one()
    assert change.base_plan_action == "initial"
    _, created = companies.upsert_company(session, keys={"customer_id": "c1"}, name="again")
    assert not created
    assert len(session.exec(select(PlanChange).where(col(PlanChange.company_id) == company.id)).all()) == 1


def test_trait_types_are_inferred_and_enforced(session: Session) -> None:
    assert [infer_trait_type(v) for v in (True, 3, 2.5, "2024-01-31", "2024-01-31T10:00:00Z", "x", None)] == [
        "boolean", "number", "number", "date", "date", "string", "string",
    ]  # fmt: skip
    company, _ = companies.upsert_company(
        session, keys={"k": "v"}, traits={"n": 1, "on": True, "d": "2024-02-03"}
    )
    kinds = {d.name: d.trait_type for d in session.exec(select(TraitDefinition)).all()}
    assert kinds == {"n": "number", "on": "boolean", "d": "date"}
    companies.upsert_company(session, keys={"k": "v"}, traits={"n": "42", "on": "FALSE"})  # convertible
    with pytest.raises(ValidationError):
        companies.upsert_company(session, keys={"k": "v"}, traits={"on": "yes"})
    with pytest.raises(ValidationError):
        companies.upsert_company(session, keys={"k": "v"}, traits={"d": "not a date"})
    companies.upsert_company_trait(session, keys={"k": "v"}, trait="n", incr=8)
    companies.upsert_company(session, keys={"k": "v"}, traits={"on": None})  # None removes the value
    from syncd.services.traits import decode_value, trait_rows

    values = {
        d.name: decode_value(r.value, d.trait_type) for r, d in trait_rows(session, "company", company.id)
    }
    assert values == {"n": 50, "d": "2024-02-03"}


def test_keys_remap_unless_prevented_and_conflicts(session: Session) -> None:
    company, _ = companies.upsert_company(session, keys={"customer_id": "c1", "email": "a@x"})
    companies.upsert_company(session, keys={"customer_id": "c1", "email": "b@x"}, prevent_key_remap=True)
    assert companies.lookup_company(session, {"email": "a@x"}).id == company.id
    companies.upsert_company(session, keys={"customer_id": "c1", "email": "b@x"})
    assert companies.lookup_company(session, {"email": "b@x"}).id == company.id
    other, _ = companies.upsert_company(session, keys={"customer_id": "c2"})
    with pytest.raises(ConflictError):
        companies.upsert_company(session, keys={"customer_id": "c2"}, company_id=company.id)
    with pytest.raises(ConflictError):
        companies.lookup_company(session, {"id": other.id, "email": "b@x"})


def test_deleting_a_feature_removes_what_hangs_off_it(session: Session) -> None:
    feature = features.create_feature(session, name="Seats", feature_type="event", event_subtype="seat")
    plan = plans.create_plan(session, name="Team", plan_type="plan")
    company, _ = companies.upsert_company(session, keys={"k": "v"}, base_plan_id=plan.id)
    plan_entitlements.create_plan_entitlement(
        session, plan_id=plan.id, feature_id=feature.id, value=EntitlementValue("numeric", value_numeric=5)
    )
    overrides.create_company_override(
        session, company_id=company.id, feature_id=feature.id, value=EntitlementValue("unlimited")
    )
    flag = flags.list_flags(session, feature_id=feature.id)[0]
    flags.update_flag_rules(session, flag.id, [RuleInput(name="everyone")])
    take_entitlement_changes(session)
    features.delete_feature(session, feature.id)
    assert take_entitlement_changes(session) == ALL
    for model in (PlanEntitlement, CompanyOverride, Rule):
        assert session.exec(select(model)).first() is None


def test_mutations_are_audited_with_their_actor(session: Session) -> None:
    actor = Actor("cli", "ops@example.com")
    plan = plans.create_plan(session, name="Audited", plan_type="plan", actor=actor)
    plans.update_plan(session, plan.id, name="Audited 2", actor=actor)
    rows = session.exec(
        select(AuditLog).where(col(AuditLog.entity_id) == plan.id).order_by(col(AuditLog.id))
    ).all()
    assert [(r.action, r.actor_type, r.actor) for r in rows] == [
        ("plan.created", "cli", "ops@example.com"),
        ("plan.updated", "cli", "ops@example.com"),
    ]
    assert rows[1].before is not None and rows[1].before["name"] == "Audited"
    assert rows[1].after is not None and rows[1].after["name"] == "Audited 2"


def test_page_bounds() -> None:
    assert Page(limit=250).limit == 250
    for bad in ({"limit": 0}, {"limit": 251}, {"offset": -1}):
        with pytest.raises(ValidationError):
            Page(**bad)
