"""Applying catalogs: creation, idempotence, versioning and migration, dry runs, pruning."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from syncd.catalog import CatalogDiff, VersionMigration, apply_catalog, plan_changes
from syncd.db import session_scope
from syncd.exceptions import CatalogError
from syncd.models import (
    CatalogSettingsRow,
    Company,
    CompanyOverride,
    CompanyPlan,
    CompanyTrait,
    Condition,
    ConditionGroup,
    CreditType,
    Feature,
    Flag,
    Plan,
    PlanCreditGrant,
    PlanEntitlement,
    PlanPrice,
    PlanVersion,
    Rule,
    TraitDefinition,
)

from .conftest import WriteLog, make_catalog

CATALOG_TABLES = (
    TraitDefinition,
    CreditType,
    Feature,
    Flag,
    Rule,
    ConditionGroup,
    Condition,
    Plan,
    PlanVersion,
    PlanPrice,
    PlanEntitlement,
    PlanCreditGrant,
    CatalogSettingsRow,
)


def apply(engine: Engine, doc: dict[str, Any], **kwargs: Any) -> CatalogDiff:
    with session_scope(engine) as session:
        return apply_catalog(session, make_catalog(doc), **kwargs)


def counts(engine: Engine) -> dict[str, int]:
    with Session(engine) as session:
        return {
            m.__tablename__: session.exec(select(func.count()).select_from(m)).one() for m in CATALOG_TABLES
        }


def plan(session: Session, key: str) -> Plan:
    return session.exec(select(Plan).where(Plan.key == key)).one()


def versions(session: Session, key: str) -> list[PlanVersion]:
    plan_id = plan(session, key).id
    return list(
        session.exec(
            select(PlanVersion).where(PlanVersion.plan_id == plan_id).order_by(col(PlanVersion.version))
        )
    )


def entitlements(session: Session, version_id: str) -> dict[str, PlanEntitlement]:
    rows = session.exec(select(PlanEntitlement).where(PlanEntitlement.plan_version_id == version_id)).all()
    features = {f.id: f.key for f in session.exec(select(Feature)).all()}
    return {features[r.feature_id]: r for r in rows}


def prices(session: Session, version_id: str) -> dict[str, PlanPrice]:
    rows = session.exec(select(PlanPrice).where(PlanPrice.plan_version_id == version_id)).all()
    return {r.interval: r for r in rows}


def put_company_on(engine: Engine, plan_key: str, name: str = "acme") -> str:
    with session_scope(engine) as session:
        company = Company(name=name)
        session.add(company)
        session.flush()
        (current,) = [v for v in versions(session, plan_key) if v.status == "published"]
        session.add(CompanyPlan(company_id=company.id, plan_id=current.plan_id, plan_version_id=current.id))
        return company.id


# --------------------------------------------------------------------------- creation


def test_apply_creates_everything(engine: Engine, doc: dict[str, Any]) -> None:
    diff = apply(engine, doc)
    assert not diff.dry_run and not diff.is_empty and diff.kept == []
    assert counts(engine) == {
        "trait_definition": 3,
        "credit_type": 1,
        "feature": 5,
        "flag": 6,
        "rule": 2,
        "condition_group": 1,
        "condition": 3,
        "plan": 3,
        "plan_version": 3,
        "plan_price": 4,
        "plan_entitlement": 7,
        "plan_credit_grant": 1,
        "catalog_settings": 1,
    }
    assert diff.changes[0] == "+ trait seats_used: company number"
    assert "+ feature api-calls: event (event api-call)" in diff.changes
    assert "+ plan pro: plan, version 1 published" in diff.changes
    assert (
        "    + api-calls: numeric 50000 per current_month (first_of_month), soft limit 40000" in diff.changes
    )
    assert "+ flag beta-ui (2 rules)" in diff.changes
    assert "+ flag maintenance" in diff.changes

    with Session(engine) as session:
        pro = plan(session, "pro")
        assert (pro.name, pro.plan_type, pro.trial_days, pro.stripe_product_id) == ("Pro", "plan", 14, None)
        (v1,) = versions(session, "pro")
        assert (v1.version, v1.status) == (1, "published") and v1.published_at is not None
        p = prices(session, v1.id)
        assert {k: (r.amount, r.currency, r.active) for k, r in p.items()} == {
            "month": (4900, "usd", True),
            "year": (49000, "usd", True),
        }
        ents = entitlements(session, v1.id)
        traits = {t.name: t.id for t in session.exec(select(TraitDefinition)).all()}
        credit = session.exec(select(CreditType)).one()
        assert (
            ents["api-calls"].value_type,
            ents["api-calls"].value_numeric,
            ents["api-calls"].metric_period,
            ents["api-calls"].metric_period_month_reset,
            ents["api-calls"].soft_limit,
        ) == ("numeric", 50000, "current_month", "first_of_month", 40000)
        assert (ents["seats"].value_type, ents["seats"].value_trait_id, ents["seats"].price_behavior) == (
            "trait",
            traits["seats_allocated"],
            "pay_in_advance",
        )
        assert (ents["sso"].value_type, ents["sso"].value_bool) == ("boolean", True)
        assert (ents["ai"].value_credit_id, ents["ai"].credit_consumption_rate) == (credit.id, 2.0)
        assert ents["sso"].rule_id_usage_exceeded is None
        assert all(ents[k].rule_id_usage_exceeded for k in ("api-calls", "seats", "ai"))
        assert len({e.rule_id for e in ents.values()}) == 4
        grant = session.exec(select(PlanCreditGrant)).one()
        assert (
            grant.plan_version_id,
            grant.credit_amount,
            grant.reset_cadence,
            grant.rollover_percentage,
        ) == (v1.id, 500, "monthly", 10)
        assert pro.audience == [
            {
                "id": pro.audience[0]["id"],
                "condition_type": "trait",
                "operator": "eq",
                "resource_ids": [],
                "trait_value": "true",
                "trait_definition": {
                    "id": traits["beta"],
                    "comparable_type": "bool",
                    "entity_type": "company",
                },
            }
        ]
        addon = plan(session, "analytics")
        assert addon.plan_type == "add_on"
        assert set(prices(session, versions(session, "analytics")[0].id)) == {"month", "one_time"}

        features = {f.key: f for f in session.exec(select(Feature)).all()}
        assert features["seats"].trait_id == traits["seats_used"]
        flags = {f.key: f for f in session.exec(select(Flag)).all()}
        assert flags["sso"].feature_id == features["sso"].id and flags["sso"].name == "SSO"
        assert flags["maintenance"].feature_id is None and flags["maintenance"].name == "Maintenance banner"
        rules = session.exec(select(Rule).where(Rule.flag_id == flags["beta-ui"].id)).all()
        assert {(r.rule_type, r.name, r.value) for r in rules} == {
            ("global_override", "kill switch", False),
            ("standard", "beta", True),
        }
        standard = next(r for r in rules if r.rule_type == "standard")
        conds = session.exec(select(Condition).where(Condition.rule_id == standard.id)).all()
        top = [c for c in conds if c.group_id is None]
        assert [(c.condition_type, c.trait_definition_id, c.trait_value) for c in top] == [
            ("trait", traits["beta"], "true")
        ]
        grouped = sorted((c for c in conds if c.group_id), key=lambda c: c.position)
        assert [(c.condition_type, c.resource_ids) for c in grouped] == [
            ("plan", [pro.id]),
            ("company", ["c1"]),
        ]

        settings = session.get(CatalogSettingsRow, 1)
        assert settings is not None
        free = plan(session, "free")
        assert (settings.initial_plan_id, settings.fallback_plan_id, settings.trial_expiry_plan_id) == (
            free.id,
            free.id,
            free.id,
        )


def test_second_apply_reports_no_changes_and_writes_nothing(
    engine: Engine, doc: dict[str, Any], writes: Callable[[], WriteLog]
) -> None:
    apply(engine, doc)
    log = writes()
    diff = apply(engine, doc)
    assert diff.is_empty and diff.changes == [] and str(diff) == "no changes" and not diff.dry_run
    assert log.statements == []


def test_ids_stay_stable_for_unchanged_objects(engine: Engine, doc: dict[str, Any]) -> None:
    apply(engine, doc)

    def ids() -> dict[str, set[str]]:
        with Session(engine) as session:
            return {
                m.__tablename__: {str(r.id) for r in session.exec(select(m)).all()}  # type: ignore[attr-defined]
                for m in CATALOG_TABLES
            }

    before = ids()
    doc["features"][2]["name"] = "Single sign-on"
    doc["plans"][1]["entitlements"]["api-calls"]["value"] = 60000
    diff = apply(engine, doc)
    assert diff.changes[0] == "~ feature sso: name 'SSO' -> 'Single sign-on'"
    assert ids() == before


def test_empty_catalog_on_empty_database_only_creates_settings(engine: Engine) -> None:
    diff = apply(engine, {})
    assert diff.changes == ["+ settings"]
    assert apply(engine, {}).is_empty


# --------------------------------------------------------------------------- versions


def test_entitlement_change_without_companies_updates_version_in_place(
    engine: Engine, doc: dict[str, Any]
) -> None:
    apply(engine, doc)
    with Session(engine) as session:
        (v1,) = versions(session, "pro")
        old = entitlements(session, v1.id)
    doc["plans"][1]["entitlements"]["api-calls"]["value"] = 60000
    doc["plans"][1]["entitlements"]["sso"] = {"type": "boolean", "value": False}
    diff = apply(engine, doc)
    assert diff.changes == [
        "~ plan pro: entitlements changed (version 1 updated in place, no companies on it)",
        "    ~ api-calls: numeric 50000 per current_month (first_of_month), soft limit 40000 -> "
        "numeric 60000 per current_month (first_of_month), soft limit 40000",
        "    ~ sso: boolean true -> boolean false",
    ]
    assert diff.migrations == []
    with Session(engine) as session:
        (same,) = versions(session, "pro")
        new = entitlements(session, same.id)
        assert same.id == v1.id and same.status == "published"
        assert new["api-calls"].id == old["api-calls"].id and new["api-calls"].value_numeric == 60000
        assert new["api-calls"].rule_id == old["api-calls"].rule_id


@pytest.mark.parametrize("migration", ["leave", "immediate"])
def test_entitlement_change_with_companies_publishes_a_new_version(
    engine: Engine, doc: dict[str, Any], migration: str
) -> None:
    doc["plans"][1]["migration"] = migration
    apply(engine, doc)
    company_id = put_company_on(engine, "pro")
    other_id = put_company_on(engine, "free", name="other")
    with session_scope(engine) as session:  # a Stripe price id the sync attached to v1
        for price in prices(session, versions(session, "pro")[0].id).values():
            price.stripe_price_id = f"price_{price.interval}"

    doc["plans"][1]["entitlements"]["api-calls"]["value"] = 75000
    diff = apply(engine, doc)
    tail = "1 company moved to version 2" if migration == "immediate" else "1 company stays on version 1"
    assert (
        diff.changes[0] == f"~ plan pro: entitlements changed -> version 2 (migration: {migration}, {tail})"
    )
    assert diff.migrations == [VersionMigration("pro", 1, 2, migration, (company_id,))]  # type: ignore[arg-type]

    with Session(engine) as session:
        v1, v2 = versions(session, "pro")
        assert (v1.status, v2.status) == ("archived", "published")
        assert v1.archived_at is not None and v2.published_at is not None
        assert all(not p.active for p in prices(session, v1.id).values())
        assert {k: (p.amount, p.active, p.stripe_price_id) for k, p in prices(session, v2.id).items()} == {
            "month": (4900, True, None),
            "year": (49000, True, None),
        }
        assert entitlements(session, v1.id)["api-calls"].value_numeric == 50000
        new = entitlements(session, v2.id)
        assert new["api-calls"].value_numeric == 75000 and set(new) == {"api-calls", "seats", "sso", "ai"}
        assert session.exec(select(PlanCreditGrant).where(PlanCreditGrant.plan_version_id == v2.id)).one()
        assignment = session.exec(select(CompanyPlan).where(CompanyPlan.company_id == company_id)).one()
        assert assignment.plan_version_id == (v2.id if migration == "immediate" else v1.id)
        untouched = session.exec(select(CompanyPlan).where(CompanyPlan.company_id == other_id)).one()
        assert untouched.plan_version_id == versions(session, "free")[0].id

    assert apply(engine, doc).is_empty
    if migration == "leave":  # the grandfathered company keeps v1; the next change makes v3
        doc["plans"][1]["entitlements"]["api-calls"]["value"] = 80000
        diff = apply(engine, doc)
        assert (
            diff.changes[0]
            == "~ plan pro: entitlements changed (version 2 updated in place, no companies on it)"
        )


def test_price_changes_keep_stripe_links_of_unchanged_prices(engine: Engine, doc: dict[str, Any]) -> None:
    apply(engine, doc)
    with session_scope(engine) as session:
        v1 = versions(session, "pro")[0]
        for price in prices(session, v1.id).values():
            price.stripe_price_id = f"price_{price.interval}"
    doc["plans"][1]["prices"] = {"month": 5900, "year": 49000}
    diff = apply(engine, doc)
    assert diff.changes == [
        "~ plan pro: prices changed (version 1 updated in place, no companies on it)",
        "    prices: month 4900, year 49000 usd -> month 5900, year 49000 usd",
    ]
    with Session(engine) as session:
        p = prices(session, v1.id)
        assert (p["month"].amount, p["month"].stripe_price_id) == (5900, None)
        assert (p["year"].amount, p["year"].stripe_price_id) == (49000, "price_year")

    doc["plans"][1]["prices"] = {"month": 5900}
    assert apply(engine, doc).changes[1] == "    prices: month 5900, year 49000 usd -> month 5900 usd"
    with Session(engine) as session:
        assert prices(session, v1.id)["year"].active is False
    doc["plans"][1]["prices"] = {"month": 5900, "year": 49000}
    apply(engine, doc)
    with Session(engine) as session:
        year = prices(session, v1.id)["year"]
        assert (year.active, year.stripe_price_id) == (True, "price_year")
    assert apply(engine, doc).is_empty


def test_entitlement_type_change_and_removal(engine: Engine, doc: dict[str, Any]) -> None:
    apply(engine, doc)
    doc["plans"][1]["entitlements"]["api-calls"] = {"type": "unlimited"}
    del doc["plans"][1]["entitlements"]["sso"]
    doc["plans"][1]["entitlements"]["seats"] = {"type": "unlimited"}
    diff = apply(engine, doc)
    assert "    - sso: boolean true" in diff.changes
    assert "    ~ seats: trait seats_allocated [pay_in_advance] -> unlimited" in diff.changes
    with Session(engine) as session:
        ents = entitlements(session, versions(session, "pro")[0].id)
        assert set(ents) == {"api-calls", "seats", "ai"}
        api = ents["api-calls"]
        assert (api.value_type, api.value_numeric, api.metric_period, api.soft_limit) == (
            "unlimited",
            None,
            None,
            None,
        )
        assert api.rule_id_usage_exceeded is None and ents["seats"].value_trait_id is None
    assert apply(engine, doc).is_empty


def test_credit_grant_changes(engine: Engine, doc: dict[str, Any]) -> None:
    apply(engine, doc)
    with Session(engine) as session:
        grant_id = session.exec(select(PlanCreditGrant)).one().id
    doc["plans"][1]["credit_grants"] = [
        {"credit": "ai-credits", "amount": 800, "rollover_percentage": 10},
        {
            "credit": "ai-credits",
            "amount": 50,
            "reset_type": "no_reset",
            "expiry_type": "duration",
            "expiry_unit": "days",
            "expiry_unit_count": 30,
        },
    ]
    diff = apply(engine, doc)
    assert diff.changes == [
        "~ plan pro: credit grants changed (version 1 updated in place, no companies on it)",
        "    credit grants: 500 ai-credits monthly, rollover 10% -> "
        "50 ai-credits once, expiry duration; 800 ai-credits monthly, rollover 10%",
    ]
    with Session(engine) as session:
        rows = session.exec(select(PlanCreditGrant)).all()
        assert sorted(r.credit_amount for r in rows) == [50, 800] and grant_id in {r.id for r in rows}
    assert apply(engine, doc).is_empty
    doc["plans"][1]["credit_grants"] = []
    apply(engine, doc)
    with Session(engine) as session:
        assert session.exec(select(PlanCreditGrant)).all() == []


def test_plan_metadata_changes_do_not_version(engine: Engine, doc: dict[str, Any]) -> None:
    apply(engine, doc)
    put_company_on(engine, "pro")
    doc["plans"][1].update(name="Pro+", trial_days=30, icon="star", description="More")
    diff = apply(engine, doc)
    assert diff.changes == [
        "~ plan pro: name 'Pro' -> 'Pro+'; description '' -> 'More'; icon none -> 'star'; trial_days 14 -> 30"
    ]
    with Session(engine) as session:
        assert len(versions(session, "pro")) == 1


def test_plan_type_cannot_change_while_assigned(engine: Engine, doc: dict[str, Any]) -> None:
    apply(engine, doc)
    put_company_on(engine, "pro")
    doc["plans"][1]["type"] = "add_on"
    doc["plans"][1]["trial_days"] = None
    with pytest.raises(CatalogError, match="cannot change type plan -> add_on while 1 company are assigned"):
        apply(engine, doc)


def test_stripe_product_is_kept_unless_the_file_sets_it(engine: Engine, doc: dict[str, Any]) -> None:
    apply(engine, doc)
    with session_scope(engine) as session:
        plan(session, "pro").stripe_product_id = "prod_sync"
    assert apply(engine, doc).is_empty  # no stripe_product in the file: the sync's link stays
    doc["plans"][1]["stripe_product"] = "prod_file"
    assert apply(engine, doc).changes == ["~ plan pro: stripe_product 'prod_sync' -> 'prod_file'"]
    doc["plans"][1]["stripe_product"] = ""
    assert apply(engine, doc).changes == ["~ plan pro: stripe_product 'prod_file' -> none"]
    with Session(engine) as session:
        assert plan(session, "pro").stripe_product_id is None


def test_fallback_plan_linked_in_the_database_is_refused(engine: Engine, doc: dict[str, Any]) -> None:
    apply(engine, doc)
    with session_scope(engine) as session:
        plan(session, "free").stripe_product_id = "prod_free"
    with pytest.raises(CatalogError, match="fallback plan must not be billing-linked"):
        apply(engine, doc)


def test_plan_without_published_version_gets_one(engine: Engine, doc: dict[str, Any]) -> None:
    apply(engine, doc)
    with session_scope(engine) as session:
        versions(session, "free")[0].status = "archived"
    diff = apply(engine, doc)
    assert diff.changes == ["~ plan free: no published version -> version 2 published"]
    assert apply(engine, doc).is_empty


def test_custom_plan_key_collision(engine: Engine, doc: dict[str, Any]) -> None:
    with session_scope(engine) as session:
        session.add(Plan(key="pro", name="Acme custom", is_custom=True))
    with pytest.raises(CatalogError, match="custom"):
        apply(engine, doc)


# --------------------------------------------------------------------------- flags, features, settings


def test_flag_default_change_line(engine: Engine, doc: dict[str, Any]) -> None:
    apply(engine, doc)
    doc["flags"][0]["default"] = True
    assert apply(engine, doc).changes == ["~ flag beta-ui: default false -> true"]


def test_flag_rule_changes_reuse_rows_and_stay_idempotent(engine: Engine, doc: dict[str, Any]) -> None:
    apply(engine, doc)
    with Session(engine) as session:
        rule_ids = {r.id for r in session.exec(select(Rule)).all()}
    rules = doc["flags"][0]["rules"]
    rules[0]["conditions"][0]["value"] = False
    rules.append({"name": "first", "priority": 0, "conditions": [{"type": "company", "ids": ["c2"]}]})
    rules.append(
        {"name": "also first", "priority": 0, "value": False, "conditions": [{"type": "user", "ids": ["u1"]}]}
    )
    rules.append({"type": "default", "value": True})
    diff = apply(engine, doc)
    assert diff.changes == [
        "~ flag beta-ui: rules changed (2 -> 5)",
        "    ~ rule 'beta' (standard, priority 1, value true, 1 condition, 1 group) -> "
        "'first' (standard, priority 0, value true, 1 condition)",
        "    + rule 'also first' (standard, priority 0, value false, 1 condition)",
        "    + rule 'beta' (standard, priority 1, value true, 1 condition, 1 group)",
        "    + rule #5 (default, priority 0, value true)",
    ]
    assert apply(engine, doc).is_empty
    with Session(engine) as session:
        rows = session.exec(select(Rule)).all()
        assert rule_ids <= {r.id for r in rows} and len(rows) == 5
        condition_ids = {c.id for c in session.exec(select(Condition)).all()}
    rules[-1]["value"] = False  # only the default rule changes: the others keep their conditions
    assert apply(engine, doc).changes == [
        "~ flag beta-ui: rules changed (5 -> 5)",
        "    ~ rule #5 (default, priority 0, value true) -> #5 (default, priority 0, value false)",
    ]
    with Session(engine) as session:
        assert {c.id for c in session.exec(select(Condition)).all()} == condition_ids
    doc["flags"][0]["rules"] = []
    assert apply(engine, doc).changes[0] == "~ flag beta-ui: rules changed (5 -> 0)"
    assert counts(engine)["rule"] == counts(engine)["condition"] == counts(engine)["condition_group"] == 0


def test_plan_version_conditions(engine: Engine, doc: dict[str, Any]) -> None:
    doc["flags"][0]["rules"][0]["conditions"].append({"type": "plan_version", "versions": ["pro@1"]})
    apply(engine, doc)
    with Session(engine) as session:
        cond = session.exec(select(Condition).where(Condition.condition_type == "plan_version")).one()
        assert cond.resource_ids == [versions(session, "pro")[0].id]
    assert apply(engine, doc).is_empty
    doc["flags"][0]["rules"][0]["conditions"][-1]["versions"] = ["pro@3"]
    with pytest.raises(CatalogError, match="plan version 'pro@3' does not exist"):
        apply(engine, doc)


def test_feature_type_cannot_change(engine: Engine, doc: dict[str, Any]) -> None:
    apply(engine, doc)
    doc["features"][2].update(type="event", event="sso-login")
    del doc["plans"][1]["entitlements"]["sso"]
    with pytest.raises(CatalogError, match=r"feature 'sso': the type cannot change \(boolean -> event\)"):
        apply(engine, doc)


def test_new_feature_links_an_existing_standalone_flag(engine: Engine, doc: dict[str, Any]) -> None:
    apply(engine, doc)
    doc["features"].append({"key": "maintenance", "name": "Maintenance"})
    diff = apply(engine, doc)
    assert diff.changes == [
        "+ feature maintenance: boolean",
        "~ flag maintenance: feature none -> maintenance",
    ]
    with Session(engine) as session:
        flag = session.exec(select(Flag).where(Flag.key == "maintenance")).one()
        feature = session.exec(select(Feature).where(Feature.key == "maintenance")).one()
        assert flag.feature_id == feature.id and flag.name == "Maintenance banner"


def test_settings_changes(engine: Engine, doc: dict[str, Any]) -> None:
    apply(engine, doc)
    doc["settings"].update(
        scheduled_downgrade_behavior="end_of_billing_period",
        trial_expiry_plan=None,
        self_service_downgrade_url="https://example.com/contact",
    )
    assert apply(engine, doc).changes == [
        "~ settings: trial_expiry_plan 'free' -> none; self_service_downgrade_url none -> "
        "'https://example.com/contact'; scheduled_downgrade_behavior 'none' -> 'end_of_billing_period'"
    ]


def test_trait_type_change(engine: Engine, doc: dict[str, Any]) -> None:
    apply(engine, doc)
    doc["traits"]["tier"] = {"type": "string"}
    doc["traits"]["beta"]["type"] = "string"
    assert apply(engine, doc).changes == [
        "~ trait beta: type boolean -> string",
        "+ trait tier: company string",
    ]


# --------------------------------------------------------------------------- dry run, transactions


def test_dry_run_writes_nothing(engine: Engine, doc: dict[str, Any], writes: Callable[[], WriteLog]) -> None:
    log = writes()
    diff = apply(engine, doc, dry_run=True)
    assert diff.dry_run and not diff.is_empty
    assert log.statements == []
    assert set(counts(engine).values()) == {0}
    with Session(engine) as session:
        assert plan_changes(session, make_catalog(doc)).changes == diff.changes
    assert apply(engine, doc).changes == diff.changes


def test_dry_run_of_a_version_change_writes_nothing(
    engine: Engine, doc: dict[str, Any], writes: Callable[[], WriteLog]
) -> None:
    apply(engine, doc)
    put_company_on(engine, "pro")
    doc["plans"][1]["entitlements"]["api-calls"]["value"] = 1
    doc["features"].pop(4)
    doc["flags"].pop(0)
    log = writes()
    diff = apply(engine, doc, dry_run=True, prune=True)
    assert diff.changes[0].startswith("~ plan pro: entitlements changed -> version 2")
    assert "- feature beta-ui" in diff.changes
    assert log.statements == []


def test_apply_does_not_commit(engine: Engine, doc: dict[str, Any]) -> None:
    with Session(engine) as session:
        apply_catalog(session, make_catalog(doc))
        session.rollback()
    assert set(counts(engine).values()) == {0}


# --------------------------------------------------------------------------- kept and pruned


def _shrink(doc: dict[str, Any]) -> None:
    """Drop the analytics add-on, the sso feature, the maintenance flag, the credit type, a trait."""
    doc["plans"].pop(2)
    del doc["plans"][1]["entitlements"]["sso"]
    del doc["plans"][1]["entitlements"]["ai"]
    doc["plans"][1]["credit_grants"] = []
    doc["features"] = [f for f in doc["features"] if f["key"] not in ("sso", "ai")]
    doc["flags"].pop(1)
    doc["credit_types"] = []
    doc["traits"]["tier"] = {"type": "string"}
    del doc["traits"]["seats_allocated"]
    doc["plans"][1]["entitlements"]["seats"] = {"type": "numeric", "value": 10}


def test_objects_missing_from_the_file_are_kept_and_reported(engine: Engine, doc: dict[str, Any]) -> None:
    apply(engine, doc)
    _shrink(doc)
    diff = apply(engine, doc)
    assert diff.kept == [
        "= flag maintenance: not in the catalog file, kept (use prune to delete)",
        "= feature sso: not in the catalog file, kept (use prune to delete)",
        "= feature ai: not in the catalog file, kept (use prune to delete)",
        "= plan analytics: not in the catalog file, kept (use prune to delete)",
        "= credit_type ai-credits: not in the catalog file, kept (use prune to delete)",
        "= trait seats_allocated: not in the catalog file, kept (use prune to delete)",
    ]
    assert not any(line.startswith("-") for line in diff.changes)
    again = apply(engine, doc)
    assert again.is_empty and again.kept == diff.kept
    assert counts(engine)["feature"] == 5 and counts(engine)["plan"] == 3


def test_prune_deletes(engine: Engine, doc: dict[str, Any]) -> None:
    apply(engine, doc)
    _shrink(doc)
    diff = apply(engine, doc, prune=True)
    assert [line for line in diff.changes if line.startswith("-")] == [
        "- flag maintenance",
        "- feature sso",
        "- feature ai",
        "- plan analytics",
        "- credit_type ai-credits",
        "- trait seats_allocated",
    ]
    assert diff.kept == []
    assert counts(engine) == {
        "trait_definition": 3,
        "credit_type": 0,
        "feature": 3,
        "flag": 3,
        "rule": 2,
        "condition_group": 1,
        "condition": 3,
        "plan": 2,
        "plan_version": 2,
        "plan_price": 2,
        "plan_entitlement": 4,
        "plan_credit_grant": 0,
        "catalog_settings": 1,
    }
    assert apply(engine, doc, prune=True).is_empty


def test_prune_keeps_what_companies_use(engine: Engine, doc: dict[str, Any]) -> None:
    apply(engine, doc)
    company_id = put_company_on(engine, "analytics")
    with session_scope(engine) as session:
        trait = session.exec(select(TraitDefinition).where(TraitDefinition.name == "seats_allocated")).one()
        session.add(CompanyTrait(company_id=company_id, trait_definition_id=trait.id, value="5"))
    put_company_on(engine, "pro", name="pro customer")  # grandfathered on pro@1 (migration: leave)
    _shrink(doc)
    diff = apply(engine, doc, prune=True)
    assert diff.kept == [
        "= feature sso: not in the catalog file, kept (not pruned: used by plan version pro@1)",
        "= feature ai: not in the catalog file, kept (not pruned: used by plan version pro@1)",
        "= plan analytics: not in the catalog file, kept (not pruned: 1 company assigned)",
        "= credit_type ai-credits: not in the catalog file, kept (not pruned: used by plan version pro@1)",
        "= trait seats_allocated: not in the catalog file, kept "
        "(not pruned: companies or users have values for it)",
    ]
    assert (
        "~ plan pro: entitlements, credit grants changed -> version 2 (migration: leave, 1 company stays on "
        "version 1)" in diff.changes
    )
    assert diff.changes[-1] == "- flag maintenance"
    with Session(engine) as session:
        assert plan(session, "analytics").name == "Analytics add-on"
        assert len(entitlements(session, versions(session, "pro")[0].id)) == 4
    assert apply(engine, doc, prune=True).is_empty


def test_prune_keeps_features_with_company_overrides(engine: Engine, doc: dict[str, Any]) -> None:
    apply(engine, doc)
    with session_scope(engine) as session:
        company = Company(name="acme")
        session.add(company)
        session.flush()
        sso = session.exec(select(Feature).where(Feature.key == "sso")).one()
        session.add(
            CompanyOverride(company_id=company.id, feature_id=sso.id, value_type="boolean", value_bool=True)
        )
    del doc["plans"][1]["entitlements"]["sso"]
    doc["features"].pop(2)
    diff = apply(engine, doc, prune=True)
    assert diff.kept == ["= feature sso: not in the catalog file, kept (not pruned: 1 company override)"]
    assert counts(engine)["feature"] == 5


def test_prune_after_immediate_migration_frees_the_old_version(engine: Engine, doc: dict[str, Any]) -> None:
    doc["plans"][1]["migration"] = "immediate"
    apply(engine, doc)
    put_company_on(engine, "pro")
    del doc["plans"][1]["entitlements"]["sso"]
    doc["features"].pop(2)
    diff = apply(engine, doc, prune=True)
    assert "- feature sso" in diff.changes
    assert counts(engine)["feature"] == 4


def test_apply_audits_and_reports_entitlement_changes(engine: Engine, doc: dict[str, Any]) -> None:
    from syncd.models import AuditLog
    from syncd.services import Actor, take_entitlement_changes

    with session_scope(engine) as session:
        apply_catalog(session, make_catalog(doc), actor=Actor("cli", "ops"))
        assert take_entitlement_changes(session) == "all"
    with session_scope(engine) as session:
        apply_catalog(session, make_catalog(doc))
        assert take_entitlement_changes(session) is None
    with Session(engine) as session:
        (row,) = session.exec(select(AuditLog)).all()
        assert (row.action, row.entity_type, row.actor_type, row.actor) == (
            "catalog.applied",
            "catalog",
            "cli",
            "ops",
        )
        assert row.after is not None and row.after["changes"][0] == "+ trait seats_used: company number"
        assert row.note is not None and row.note.endswith("change(s)")
