"""Raw responses of every read and write, checked strictly against the SDK's types."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import pytest
from schematic.companies.types import (
    GetCompanyResponse,
    GetUserResponse,
    ListCompaniesResponse,
    ListUsersResponse,
    LookupCompanyResponse,
)
from schematic.entitlements.types import (
    GetCompanyOverrideResponse,
    GetPlanEntitlementResponse,
    ListCompanyOverridesResponse,
    ListPlanEntitlementsResponse,
)
from schematic.features.types import (
    GetFeatureResponse,
    GetFlagResponse,
    ListFeaturesResponse,
    ListFlagsResponse,
    UpdateFlagRulesResponse,
)
from schematic.plans.types import GetPlanResponse, ListPlansResponse, UpsertBillingProductPlanResponse
from schematic.webhooks.types import (
    ListWebhookEventsResponse,
    ListWebhooksResponse,
    SendTestWebhookActionResponse,
)
from sqlmodel import Session

from syncd.models import CreditType

from .conformance import problems
from .conftest import ApiServer, unique


def _ok(http: httpx.Client, method: str, path: str, **kwargs: Any) -> Any:
    response = http.request(method, path, **kwargs)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(scope="module")
def world(api: ApiServer) -> dict[str, str]:
    """A company using every feature the response shapes can carry."""
    with Session(api.daemon.engine) as session:
        credit = CreditType(key=unique("credits"), name="Credits")
        session.add(credit)
        session.commit()
        credit_id = credit.id
    with api.http() as http:
        post, put = (lambda p, b: _ok(http, "POST", p, json=b)), (lambda p, b: _ok(http, "PUT", p, json=b))
        plan = post("/plans", {"name": unique("Pro"), "plan_type": "plan"})["data"]
        addon = post("/plans", {"name": unique("Boost"), "plan_type": "add_on"})["data"]
        put(
            f"/plans/{plan['id']}/billing_products",
            {"billing_product_id": unique("prod"), "charge_type": "recurring", "is_trialable": False,
             "monthly_price": 1000, "monthly_price_id": unique("pm"), "one_time_price": 0},
        )  # fmt: skip
        company = post(
            "/companies",
            {"keys": {"customer_id": unique()}, "name": "World", "base_plan_id": plan["id"],
             "traits": {"seats": 10, "since": "2024-05-01", "beta": False}},
        )["data"]  # fmt: skip
        trait_id = company["entity_traits"][0]["definition_id"]
        put(f"/company-plans/{company['id']}", {"base_plan_id": plan["id"], "add_on_ids": [addon["id"]]})
        user = post("/users", {"keys": {"uid": unique()}, "company_id": company["id"], "traits": {"a": 1}})[
            "data"
        ]
        features = [
            post("/features", {"name": unique(kind), "description": "", "feature_type": kind, **extra})[
                "data"
            ]
            for kind, extra in (
                ("boolean", {}),
                ("event", {"event_subtype": unique("ev")}),
                ("trait", {"trait_id": trait_id}),
            )
        ]
        values = [
            {"value_type": "boolean", "value_bool": True},
            {"value_type": "numeric", "value_numeric": 5, "metric_period": "current_month"},
            {"value_type": "trait", "value_trait_id": trait_id},
        ]
        entitlement = None
        for feature, value in zip(features, values, strict=True):
            entitlement = post(
                "/plan-entitlements", {"plan_id": plan["id"], "feature_id": feature["id"], **value}
            )
        post(
            "/company-overrides",
            {"company_id": company["id"], "feature_id": features[1]["id"], "value_type": "credit",
             "value_credit_id": credit_id, "note": "credits instead",
             "expiration_date": (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat()},
        )  # fmt: skip
        version = plan["active_version"]["id"]
        conditions = [
            {"condition_type": "company", "operator": "eq", "resource_ids": [company["id"]]},
            {"condition_type": "user", "operator": "ne", "resource_ids": [user["id"]]},
            {"condition_type": "plan", "operator": "eq", "resource_ids": [plan["id"]]},
            {"condition_type": "base_plan", "operator": "eq", "resource_ids": [plan["id"]]},
            {"condition_type": "plan_version", "operator": "eq", "resource_ids": [version]},
            {"condition_type": "billing_product", "operator": "eq", "resource_ids": ["prod_x"]},
            {"condition_type": "trait", "operator": "gte", "resource_ids": [], "trait_id": trait_id,
             "trait_value": "3"},
            {"condition_type": "metric", "operator": "lt", "resource_ids": [], "event_subtype": "ev",
             "metric_value": 10, "metric_period": "current_month",
             "metric_period_month_reset": "billing_cycle"},
            {"condition_type": "credit", "operator": "gte", "resource_ids": [], "credit_id": credit_id,
             "credit_cost": 2.5},
        ]  # fmt: skip
        rule = {"name": "all", "priority": 1, "value": True, "conditions": conditions,
                "condition_groups": [{"conditions": conditions[:2]}]}  # fmt: skip
        flag_id = features[0]["flags"][0]["id"]
        put(f"/flags/{flag_id}/rules", {"rules": [rule, {**rule, "name": "default", "rule_type": "default"}]})
        hook = post(
            "/webhooks",
            {"name": "w", "url": "https://w.test", "request_types": ["company.updated"],
             "credit_trigger_configs": [{"credit_id": credit_id}]},
        )["data"]  # fmt: skip
    assert entitlement is not None
    return {
        "company_id": company["id"],
        "user_id": user["id"],
        "plan_id": plan["id"],
        "feature_id": features[1]["id"],
        "flag_id": flag_id,
        "webhook_id": hook["id"],
        "entitlement_id": entitlement["data"]["id"],
    }


READS = [
    ("/companies/{company_id}", GetCompanyResponse),
    ("/companies?limit=5", ListCompaniesResponse),
    ("/users/{user_id}", GetUserResponse),
    ("/users?company_id={company_id}", ListUsersResponse),
    ("/features/{feature_id}", GetFeatureResponse),
    ("/features?limit=5", ListFeaturesResponse),
    ("/flags/{flag_id}", GetFlagResponse),
    ("/flags?limit=5", ListFlagsResponse),
    ("/plans/{plan_id}", GetPlanResponse),
    ("/plans?with_entitlements=true&limit=5", ListPlansResponse),
    ("/plan-entitlements/{entitlement_id}", GetPlanEntitlementResponse),
    ("/plan-entitlements?plan_id={plan_id}", ListPlanEntitlementsResponse),
    ("/company-overrides?company_id={company_id}", ListCompanyOverridesResponse),
    ("/webhooks?limit=5", ListWebhooksResponse),
]


@pytest.mark.parametrize(("path", "model"), READS, ids=[p for p, _ in READS])
def test_reads_conform(api: ApiServer, world: dict[str, str], path: str, model: Any) -> None:
    with api.http() as http:
        body = _ok(http, "GET", path.format(**world))
    assert problems(model, body) == []
    if isinstance(body["data"], list):
        assert body["data"], "list should not be empty"


def test_writes_conform(api: ApiServer, world: dict[str, str]) -> None:
    with api.http() as http:
        lookup = _ok(http, "GET", "/companies/lookup", params={"keys[id]": world["company_id"]})
        override_id = _ok(http, "GET", f"/company-overrides?company_id={world['company_id']}")["data"][0][
            "id"
        ]
        override = _ok(http, "GET", f"/company-overrides/{override_id}")
        rules = _ok(http, "PUT", f"/flags/{world['flag_id']}/rules", json={"rules": []})
        link = _ok(
            http,
            "PUT",
            f"/plans/{world['plan_id']}/billing_products",
            json={"charge_type": "free", "is_trialable": False},
        )
        test = _ok(
            http, "POST", f"/webhooks/{world['webhook_id']}/test", json={"request_type": "company.updated"}
        )
        events = _ok(http, "GET", f"/webhook-events?webhook_id={world['webhook_id']}")
    assert problems(LookupCompanyResponse, lookup) == []
    assert problems(GetCompanyOverrideResponse, override) == []
    assert problems(UpdateFlagRulesResponse, rules) == []
    assert problems(UpsertBillingProductPlanResponse, link) == []
    assert problems(SendTestWebhookActionResponse, test) == []
    assert problems(ListWebhookEventsResponse, events) == []


def test_checker_catches_bad_enums_and_unknown_keys() -> None:
    from schematic.types import PlanVersionResponseData

    bad = {"id": "x", "version": 1, "status": "live", "renewal_policy": "auto_renew", "plan_typ": "plan"}
    found = problems(PlanVersionResponseData, bad)
    assert any("'live'" in p for p in found) and any("plan_typ" in p for p in found)
    assert any("required" in p for p in found)
