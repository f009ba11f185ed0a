"""Catalog file validation: strict fields, references and business rules, with named paths."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from syncd.catalog import Catalog, CatalogValidationError, load_catalog, loads, parse_catalog
from syncd.catalog.schema import ConditionSpec, format_loc
from syncd.exceptions import CatalogError

from .conftest import base_doc, make_catalog


def errors_of(doc: dict[str, Any]) -> list[str]:
    with pytest.raises(CatalogValidationError) as info:
        parse_catalog(doc)
    return info.value.errors


def test_base_catalog_is_valid() -> None:
    catalog = make_catalog()
    assert [p.key for p in catalog.plans] == ["free", "pro", "analytics"]
    assert catalog.plans[1].credit_grants[0].reset_cadence == "monthly"  # canonical default


def test_empty_document_is_an_empty_catalog() -> None:
    assert parse_catalog({}) == Catalog()


def test_unknown_field_is_named() -> None:
    doc = base_doc()
    doc["plans"][1]["prise"] = {}
    assert errors_of(doc) == ["plans[1].prise: Extra inputs are not permitted"]


def test_wrong_type_is_named_without_coercion() -> None:
    doc = base_doc()
    doc["plans"][1]["entitlements"]["api-calls"]["value"] = "1000"
    assert errors_of(doc) == ["plans[1].entitlements.api-calls.value: Input should be a valid integer"]


def test_missing_entitlement_value_is_named() -> None:
    doc = base_doc()
    del doc["plans"][0]["entitlements"]["seats"]["value"]
    assert errors_of(doc) == ["plans[0].entitlements.seats.value: Field required"]


def test_unknown_entitlement_type_is_named() -> None:
    doc = base_doc()
    doc["plans"][0]["entitlements"]["seats"] = {"type": "lots"}
    (error,) = errors_of(doc)
    assert error.startswith("plans[0].entitlements.seats: Input tag 'lots'")


def test_field_of_another_entitlement_type_is_rejected() -> None:
    doc = base_doc()
    doc["plans"][1]["entitlements"]["sso"] = {"type": "boolean", "value": True, "trait": "beta"}
    assert errors_of(doc) == ["plans[1].entitlements.sso.trait: Extra inputs are not permitted"]


def test_all_errors_are_reported_together() -> None:
    doc = base_doc()
    doc["features"][0]["kind"] = "x"
    doc["plans"][2]["type"] = "bundle"
    errors = errors_of(doc)
    assert "features[0].kind: Extra inputs are not permitted" in errors
    assert any(e.startswith("plans[2].type: Input should be 'plan' or 'add_on'") for e in errors)


def test_message_lists_errors_under_a_header() -> None:
    doc = base_doc()
    doc["features"][0]["kind"] = "x"
    with pytest.raises(CatalogError, match=r"invalid catalog \(1 error\):\n  features\[0\]\.kind"):
        parse_catalog(doc)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            lambda d: d["plans"][0]["entitlements"].update(nope={"type": "unlimited"}),
            "plans[0].entitlements.nope: unknown feature 'nope'",
        ),
        (
            lambda d: d["plans"][1]["entitlements"].update(sso={"type": "numeric", "value": 5}),
            "plans[1].entitlements.sso: numeric entitlement on boolean feature 'sso'",
        ),
        (
            lambda d: d["plans"][1]["entitlements"].update({"api-calls": {"type": "boolean"}}),
            "plans[1].entitlements.api-calls: boolean entitlement on event feature 'api-calls'",
        ),
        (
            lambda d: d["plans"][1]["entitlements"].update(seats={"type": "credit", "credit": "ai-credits"}),
            "plans[1].entitlements.seats: credit entitlement on trait feature 'seats'",
        ),
        (
            lambda d: d["plans"][1]["entitlements"].update(
                seats={"type": "numeric", "value": 1, "period": "current_day"}
            ),
            "plans[1].entitlements.seats: 'period' only applies to event features",
        ),
        (
            lambda d: d["plans"][1]["entitlements"].update(ai={"type": "credit", "credit": "gold"}),
            "plans[1].entitlements.ai.credit: unknown credit type 'gold'",
        ),
        (
            lambda d: d["plans"][1]["entitlements"].update(seats={"type": "trait", "trait": "height"}),
            "plans[1].entitlements.seats.trait: unknown trait 'height'",
        ),
        (
            lambda d: d["plans"][1]["entitlements"].update(seats={"type": "trait", "trait": "beta"}),
            "plans[1].entitlements.seats.trait: trait 'beta' must have type 'number'",
        ),
        (
            lambda d: d["plans"][1]["entitlements"].update(
                {"api-calls": {"type": "numeric", "value": 1, "price_behavior": "pay_in_advance"}}
            ),
            "plans[1].entitlements.api-calls: price_behavior 'pay_in_advance' needs a trait entitlement",
        ),
        (
            lambda d: d["plans"][1]["credit_grants"].append({"credit": "gold", "amount": 1}),
            "plans[1].credit_grants[1].credit: unknown credit type 'gold'",
        ),
        (
            lambda d: d["plans"][1]["audience"].append({"type": "plan", "plans": ["platinum"]}),
            "plans[1].audience[1].plans: unknown plan 'platinum'",
        ),
        (lambda d: d["features"][1].update(trait="nope"), "features[1].trait: unknown trait 'nope'"),
        (
            lambda d: d["features"].append({"key": "sso", "name": "again"}),
            "features[5].key: duplicate key 'sso' (also features[2])",
        ),
        (
            lambda d: d["flags"][0]["rules"][0]["conditions"].append({"type": "credit", "credit": "x"}),
            "flags[0].rules[0].conditions[1].credit: unknown credit type 'x'",
        ),
        (
            lambda d: d["flags"][0]["rules"][0]["condition_groups"][0]["conditions"].append(
                {"type": "plan_version", "versions": ["pro"]}
            ),
            "flags[0].rules[0].condition_groups[0].conditions[2].versions: "
            "'pro' is not of the form 'plan-key@N'",
        ),
        (
            lambda d: d["flags"].append({"key": "orphan"}),
            "flags[2].name: a flag without a feature of the same key needs a name",
        ),
        (lambda d: d["settings"].update(fallback_plan="gold"), "settings.fallback_plan: unknown plan 'gold'"),
        (
            lambda d: d["settings"].update(fallback_plan="pro"),
            "settings.fallback_plan: 'pro' must not be billing-linked",
        ),
        (
            lambda d: d["settings"].update(initial_plan="analytics"),
            "settings.initial_plan: 'analytics' is an add-on; it must be a base plan",
        ),
        (
            lambda d: d["settings"].update(trial_expiry_plan="pro"),
            "settings.trial_expiry_plan: 'pro' must be free (no paid price)",
        ),
        (
            lambda d: d["settings"].update(initial_plan="pro", trial_payment_method_required=True),
            "settings.initial_plan: 'pro' would require a payment method",
        ),
        (
            lambda d: d["plans"][0].update(stripe_product="prod_1"),
            "settings.fallback_plan: 'free' must not be billing-linked",
        ),
        (
            lambda d: d["traits"].update(beta2={"entity": "company", "type": "string", "name": "beta"}),
            "traits.beta: company trait 'beta' is defined twice",
        ),
    ],
)
def test_reference_and_business_rules_name_the_field(mutate: Any, expected: str) -> None:
    doc = base_doc()
    mutate(doc)
    errors = errors_of(doc)
    assert any(e.startswith(expected) for e in errors), errors


def test_trial_plan_may_be_initial_without_payment_method() -> None:
    doc = base_doc()
    doc["settings"]["initial_plan"] = "pro"
    assert make_catalog(doc).settings.initial_plan == "pro"


def test_trial_expiry_plan_must_not_offer_a_trial() -> None:
    doc = base_doc()
    doc["plans"][0]["trial_days"] = 7
    assert "settings.trial_expiry_plan: 'free' must not offer a trial" in errors_of(doc)


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        ({"type": "event"}, "features[2]: an 'event' feature needs 'event'"),
        ({"event": "x"}, "features[2]: 'event' only applies to event features"),
        ({"type": "trait"}, "features[2]: a 'trait' feature needs 'trait'"),
        ({"type": "license"}, "features[2].type: Input should be 'boolean', 'event' or 'trait'"),
    ],
)
def test_feature_type_fields(patch: dict[str, Any], expected: str) -> None:
    doc = base_doc()
    doc["features"][2].update(patch)
    assert any(e.startswith(expected) for e in errors_of(doc))


@pytest.mark.parametrize(
    ("plan_patch", "expected"),
    [
        ({"type": "add_on", "trial_days": 3}, "plans[1]: 'trial_days' applies to base plans"),
        ({"prices": {"one_time": 100}}, "plans[1]: 'prices.one_time' applies to add-ons only"),
        ({"prices": {"month": -1}}, "plans[1].prices.month: Input should be greater than or equal to 0"),
        ({"prices": {"month": 1, "currency": "dollars"}}, "plans[1].prices.currency: String should match"),
        ({"migration": "later"}, "plans[1].migration: Input should be 'leave' or 'immediate'"),
        ({"key": "pro plan"}, "plans[1].key: String should match pattern"),
        (
            {
                "credit_grants": [
                    {"credit": "ai-credits", "amount": 1, "reset_type": "no_reset", "rollover_percentage": 5}
                ]
            },
            "plans[1].credit_grants[0]: 'rollover_percentage' needs a monthly, quarterly or yearly reset",
        ),
        (
            {"credit_grants": [{"credit": "ai-credits", "amount": 1, "expiry_type": "duration"}]},
            "plans[1].credit_grants[0]: expiry_type 'duration' needs 'expiry_unit' and 'expiry_unit_count'",
        ),
    ],
)
def test_plan_fields(plan_patch: dict[str, Any], expected: str) -> None:
    doc = base_doc()
    doc["plans"][1].update(plan_patch)
    errors = errors_of(doc)
    assert any(e.startswith(expected) for e in errors), errors


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ({"type": "trait", "trait": "beta", "event": "x"}, "event not allowed in a 'trait' condition"),
        ({"type": "company"}, "a 'company' condition needs 'ids'"),
        ({"type": "metric", "event": "api-call"}, "a 'metric' condition needs 'value'"),
        (
            {"type": "metric", "event": "api-call", "value": 1.5},
            "'value' of a 'metric' condition must be an integer",
        ),
        (
            {"type": "metric", "event": "e", "value": 1, "month_reset": "billing_cycle"},
            "'month_reset' only applies to period 'current_month'",
        ),
        ({"type": "plan", "plans": ["pro"], "operator": "about"}, "Input should be 'eq'"),
    ],
)
def test_condition_fields(condition: dict[str, Any], expected: str) -> None:
    doc = base_doc()
    doc["flags"][0]["rules"][0]["conditions"] = [condition]
    errors = errors_of(doc)
    assert any(e.startswith("flags[0].rules[0].conditions[0]") and expected in e for e in errors), errors


def test_unconditional_rules_take_no_conditions() -> None:
    doc = base_doc()
    doc["flags"][0]["rules"][1]["conditions"] = [{"type": "company", "ids": ["c"]}]
    assert errors_of(doc) == [
        "flags[0].rules[1]: a 'global_override' rule always matches; it takes no conditions"
    ]


def test_empty_condition_group_is_rejected() -> None:
    doc = base_doc()
    doc["flags"][0]["rules"][0]["condition_groups"] = [{"conditions": []}]
    (error,) = errors_of(doc)
    assert error.startswith(
        "flags[0].rules[0].condition_groups[0].conditions: an empty condition group never matches"
    )


def test_canonical_forms() -> None:
    cond = ConditionSpec.model_validate(
        {"type": "metric", "event": "e", "value": 5, "period": "current_month"}
    )
    assert cond.month_reset == "first_of_month"
    assert ConditionSpec.model_validate({"type": "trait", "trait": "t", "value": True}).value == "true"
    assert ConditionSpec.model_validate({"type": "trait", "trait": "t", "value": 3}).value == "3"
    doc = base_doc()
    doc["plans"][1]["prices"]["currency"] = "USD"
    doc["plans"][1]["trial_days"] = 0
    plan = make_catalog(doc).plans[1]
    assert plan.prices is not None and plan.prices.currency == "usd"
    assert plan.trial_days is None


def test_every_feature_gets_a_flag() -> None:
    flags = {f.key: f for f in make_catalog().effective_flags()}
    assert set(flags) == {"api-calls", "seats", "sso", "ai", "beta-ui", "maintenance"}
    assert flags["sso"].name == "SSO" and flags["sso"].default is False and flags["sso"].rules == []
    assert [r.type for r in flags["beta-ui"].rules] == ["global_override", "standard"]  # evaluation order
    assert flags["maintenance"].name == "Maintenance banner"


def test_format_loc_drops_the_discriminator_tag() -> None:
    assert format_loc(("plans", 1, "entitlements", "numeric", "numeric", "value")) == (
        "plans[1].entitlements.numeric.value"
    )
    assert format_loc(()) == "(catalog)"


# ---- files


def test_load_toml_and_yaml(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text('[[features]]\nkey = "sso"\nname = "SSO"\n')
    yml = tmp_path / "c.yml"
    yml.write_text("features:\n  - key: sso\n    name: SSO\n")
    assert load_catalog(toml) == load_catalog(str(yml))


def test_load_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[features]]\nkey = "sso"\n')
    with pytest.raises(
        CatalogValidationError, match=r"(?s)invalid catalog .*bad\.toml .*features\[0\]\.name: Field required"
    ):
        load_catalog(bad)


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("x.toml", "[[features]\n", "invalid TOML in catalog"),
        ("x.yaml", "features: [\n", "invalid YAML in catalog"),
        ("x.yaml", "- 1\n- 2\n", "must be a mapping at the top level"),
        ("x.json", "{}", "unknown file type '.json'"),
    ],
)
def test_load_rejects_bad_files(tmp_path: Path, name: str, content: str, match: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(CatalogError, match=match):
        load_catalog(path)


def test_load_missing_file() -> None:
    with pytest.raises(CatalogError, match="cannot read catalog"):
        load_catalog("/nonexistent/catalog.toml")


def test_empty_yaml_is_an_empty_catalog() -> None:
    assert loads("", "yaml") == Catalog()


def test_yaml_dates_become_trait_values() -> None:
    text = """
traits: {renewal: {type: date}}
flags:
  - key: renewing
    name: Renewing
    rules: [{conditions: [{type: trait, trait: renewal, operator: lt, value: 2027-01-01}]}]
"""
    catalog = loads(text, "yaml")
    assert catalog.flags[0].rules[0].conditions[0].value == "2027-01-01"
