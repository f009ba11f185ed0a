"""Refused requests: each is a 4xx with ``{"error", "code", "details"}`` and writes nothing."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from .conftest import ApiServer, unique


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    path: str
    status: int
    code: str | None = None
    body: Any = None  # JSON-encoded unless bytes
    params: dict[str, Any] | None = None


@pytest.fixture(scope="module")
def seed(api: ApiServer) -> dict[str, str]:
    """Existing entities the cases refer to."""
    sdk = api.sdk()
    plan = sdk.plans.create_plan(name=unique("Seed"), plan_type="plan").data
    addon = sdk.plans.create_plan(name=unique("Seed add-on"), plan_type="add_on").data
    feature = sdk.features.create_feature(
        name=unique("Seed feature"), description="", feature_type="boolean"
    ).data
    customer = unique("seed")
    company = sdk.companies.upsert_company(
        keys={"customer_id": customer}, name="Seed", traits={"seats": 5}
    ).data
    hook = sdk.webhooks.create_webhook(
        name="seed", url="https://seed.test", request_types=["company.created"]
    ).data
    return {
        "plan_id": plan.id,
        "addon_id": addon.id,
        "feature_id": feature.id,
        "flag_id": feature.flags[0].id,
        "company_id": company.id,
        "customer": customer,
        "webhook_id": hook.id,
    }


CASES = [
    # malformed bodies
    Case("invalid json", "POST", "/companies", 400, "invalid_json", b'{"keys": {'),
    Case("json array", "POST", "/companies", 400, "invalid_body", [1, 2]),
    Case("empty body", "POST", "/plans", 400, "invalid_body", b""),
    Case("keys not an object", "POST", "/companies", 400, "invalid_body", {"keys": "acme"}),
    Case("key value not a string", "POST", "/companies", 400, "invalid_body", {"keys": {"id": 7}}),
    Case("name not a string", "POST", "/companies", 400, "invalid_body", {"keys": {"a": "b"}, "name": 5}),
    Case("no keys", "POST", "/companies", 400, "missing_keys", {"keys": {}}),
    Case("naive datetime", "POST", "/companies", 400, "invalid_body",
         {"keys": {"a": "naive"}, "last_seen_at": "2026-01-01T00:00:00"}),
    Case("string for int", "POST", "/company-traits", 400, "invalid_body",
         {"keys": {"a": "b"}, "trait": "t", "incr": "5"}),
    Case("set and incr", "POST", "/company-traits", 400, "invalid_trait_update",
         {"keys": {"a": "b"}, "trait": "t", "set": "x", "incr": 1}),
    Case("missing required field", "POST", "/features", 400, "invalid_body", {"name": "x"}),
    Case("rules not a list", "PUT", "/flags/{flag_id}/rules", 400, "invalid_body", {"rules": {}}),
    Case("bad plan type", "POST", "/plans", 400, "invalid_value", {"name": "x", "plan_type": "bundle"}),
    Case("bad value type", "POST", "/plan-entitlements", 400, "invalid_value",
         {"plan_id": "{plan_id}", "feature_id": "{feature_id}", "value_type": "lots"}),
    Case("unsupported field", "PUT", "/plans/{plan_id}/billing_products", 400, "unsupported_parameter",
         {"charge_type": "free", "is_trialable": False, "quarterly_price_id": "price_q"}),
    Case("trait type mismatch", "POST", "/companies", 400, "invalid_trait_value",
         {"keys": {"customer_id": "{customer}"}, "name": "Renamed", "traits": {"seats": "many"}}),
    Case("past expiration", "POST", "/company-overrides", 400, "invalid_expiration_date",
         {"company_id": "{company_id}", "feature_id": "{feature_id}", "value_type": "boolean",
          "expiration_date": "2001-01-01T00:00:00Z"}),
    Case("add-on as base plan", "PUT", "/company-plans/{company_id}", 400, "invalid_base_plan",
         {"base_plan_id": "{addon_id}", "add_on_ids": []}),
    Case("bad webhook url", "POST", "/webhooks", 400, "invalid_url",
         {"name": "x", "url": "not a url", "request_types": ["company.created"]}),
    # unknown ids
    Case("unknown company", "GET", "/companies/comp_missing", 404, "company_not_found"),
    Case("unknown plan for company", "PUT", "/company-plans/{company_id}", 404, "plan_not_found",
         {"base_plan_id": "plan_missing", "add_on_ids": []}),
    Case("unknown company for plans", "PUT", "/company-plans/comp_missing", 404, "company_not_found",
         {"add_on_ids": []}),
    Case("unknown base plan on create", "POST", "/companies", 404, "plan_not_found",
         {"keys": {"customer_id": "never-created"}, "base_plan_id": "plan_missing"}),
    Case("unknown feature", "PUT", "/features/feat_missing", 404, "feature_not_found", {"name": "x"}),
    Case("unknown plan entitlement plan", "POST", "/plan-entitlements", 404, "plan_not_found",
         {"plan_id": "plan_missing", "feature_id": "{feature_id}", "value_type": "boolean"}),
    Case("unknown override company", "POST", "/company-overrides", 404, "company_not_found",
         {"company_id": "comp_missing", "feature_id": "{feature_id}", "value_type": "boolean"}),
    Case("unknown rule id", "PUT", "/flags/{flag_id}/rules", 404, "rule_not_found",
         {"rules": [{"id": "rule_missing", "name": "r", "priority": 0, "value": True, "conditions": [],
                     "condition_groups": []}]}),
    Case("unknown resource in second rule", "PUT", "/flags/{flag_id}/rules", 404, "company_not_found",
         {"rules": [{"name": "ok", "priority": 0, "value": True, "conditions": [], "condition_groups": []},
                    {"name": "bad", "priority": 1, "value": True, "condition_groups": [],
                     "conditions": [{"condition_type": "company", "operator": "eq",
                                     "resource_ids": ["comp_missing"]}]}]}),
    Case("unknown user membership", "POST", "/users", 404, "company_not_found",
         {"keys": {"user_id": "never-created"}, "company_id": "comp_missing"}),
    Case("unknown webhook", "DELETE", "/webhooks/whk_missing", 404, "webhook_not_found"),
    Case("unknown lookup", "GET", "/companies/lookup", 404, "company_not_found",
         params={"keys[customer_id]": "nobody"}),
    # query strings
    Case("limit too large", "GET", "/companies", 400, "invalid_limit", params={"limit": "1000"}),
    Case("limit not a number", "GET", "/plans", 400, "invalid_query", params={"limit": "ten"}),
    Case("negative offset", "GET", "/features", 400, "invalid_offset", params={"offset": "-1"}),
    Case("bad boolean", "GET", "/companies", 400, "invalid_query", params={"without_plan": "maybe"}),
    Case("unsupported filter", "GET", "/companies", 400, "unsupported_parameter",
         params={"subscription_statuses": "active"}),
    Case("keys not json", "GET", "/companies/lookup", 400, "invalid_keys", params={"keys": "{nope"}),
    Case("cancel subscription", "DELETE", "/companies/{company_id}", 400, "unsupported_parameter",
         params={"cancel_subscription": "true"}),
    # transport
    Case("wrong method", "PATCH", "/companies", 405, "method_not_allowed", {}),
    Case("body too large", "POST", "/companies", 413, "payload_too_large", b"x" * 2_000_000),
]  # fmt: skip


def _fill(value: Any, seed: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**seed) if "{" in value and not value.startswith("{n") else value
    if isinstance(value, dict):
        return {k: _fill(v, seed) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, seed) for v in value]
    return value


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_refused_and_nothing_written(api: ApiServer, seed: dict[str, str], case: Case) -> None:
    content = case.body if isinstance(case.body, bytes) else None
    if case.body is not None and content is None:
        content = json.dumps(_fill(case.body, seed)).encode()
    company_path = f"/companies/{seed['company_id']}"
    before = api.table_counts()
    with api.http() as http:
        company_before = http.get(company_path).json()["data"]
        response = http.request(
            case.method,
            _fill(case.path, seed),
            content=content,
            params=case.params,
            headers={"content-type": "application/json"},
        )
        company_after = http.get(company_path).json()["data"]
    assert response.status_code == case.status, response.text
    body = response.json()
    assert set(body) == {"error", "code", "details"} and body["error"]
    if case.code:
        assert body["code"] == case.code, body
    assert api.table_counts() == before
    assert (company_after["name"], company_after["traits"]) == (
        company_before["name"],
        company_before["traits"],
    )


def test_validation_errors_list_the_fields(api: ApiServer) -> None:
    with api.http() as http:
        body = http.post("/features", json={"name": 1, "feature_type": "boolean"}).json()
    locs = {e["loc"] for e in body["details"]["errors"]}
    assert {"name", "description"} <= locs
