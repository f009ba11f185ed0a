"""Every HTTP route x every key kind, against an explicit expected-access table.

The table below is written out by hand (not derived from ``syncd/api/auth.py``), so a change to
who may call what shows up here as a failing cell. Routes are enumerated from the served
``/openapi.json``: a new route without a row fails too.

Expected cell values: ``401`` (no or unknown key), ``403`` (known key of the wrong kind), or
``"ok"`` (passes authentication: the handler answers exactly as it does for the secret key,
whatever that is for an empty body and unknown ids: 200, 400, 404...).
"""

from __future__ import annotations

import re

import httpx

from tests.api.conftest import ApiServer

KINDS = ("secret", "publishable", "readonly", "none", "wrong")
ALL = {"secret", "publishable", "readonly"}
READ, WRITE, CHECK, INGEST = {"secret", "readonly"}, {"secret"}, ALL, {"secret", "publishable"}
PUBLIC = "public"  # no key needed: every kind, even none or a wrong one, reaches the handler

ACCESS: dict[tuple[str, str], set[str] | str] = {
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/ready"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,
    ("GET", "/openapi.json"): PUBLIC,
    ("POST", "/webhooks/stripe"): PUBLIC,  # authenticated by the Stripe-Signature instead
    ("POST", "/flags/check"): CHECK,
    ("POST", "/flags/check-bulk"): CHECK,
    ("POST", "/flags/{key}/check"): CHECK,
    ("POST", "/batch"): INGEST,
    ("POST", "/events"): INGEST,
    ("POST", "/event-batch"): INGEST,
    ("GET", "/companies"): READ,
    ("POST", "/companies"): WRITE,
    ("GET", "/companies/lookup"): READ,
    ("GET", "/companies/{company_id}"): READ,
    ("DELETE", "/companies/{company_id}"): WRITE,
    ("POST", "/company-traits"): WRITE,
    ("GET", "/users"): READ,
    ("POST", "/users"): WRITE,
    ("GET", "/users/lookup"): READ,
    ("GET", "/users/{user_id}"): READ,
    ("GET", "/features"): READ,
    ("POST", "/features"): WRITE,
    ("GET", "/features/{feature_id}"): READ,
    ("PUT", "/features/{feature_id}"): WRITE,
    ("DELETE", "/features/{feature_id}"): WRITE,
    ("GET", "/flags"): READ,
    ("GET", "/flags/{flag_id}"): READ,
    ("PUT", "/flags/{flag_id}/rules"): WRITE,
    ("GET", "/plans"): READ,
    ("POST", "/plans"): WRITE,
    ("GET", "/plans/{plan_id}"): READ,
    ("PUT", "/plans/{plan_id}"): WRITE,
    ("DELETE", "/plans/{plan_id}"): WRITE,
    ("PUT", "/plans/{plan_id}/billing_products"): WRITE,
    ("PUT", "/company-plans/{company_id}"): WRITE,
    ("GET", "/plan-entitlements"): READ,
    ("POST", "/plan-entitlements"): WRITE,
    ("GET", "/plan-entitlements/{plan_entitlement_id}"): READ,
    ("PUT", "/plan-entitlements/{plan_entitlement_id}"): WRITE,
    ("DELETE", "/plan-entitlements/{plan_entitlement_id}"): WRITE,
    ("POST", "/companies/{company_id}/plan-change"): WRITE,
    ("DELETE", "/companies/{company_id}/scheduled-downgrade"): WRITE,
    ("POST", "/billing/credits/grants/company"): WRITE,
    ("GET", "/billing/credits/grants/company/list"): READ,
    ("GET", "/billing/credits/grants/company/count"): READ,
    ("PUT", "/billing/credits/grants/{grant_id}/zero-out"): WRITE,
    ("GET", "/company-overrides"): READ,
    ("POST", "/company-overrides"): WRITE,
    ("GET", "/company-overrides/{company_override_id}"): READ,
    ("PUT", "/company-overrides/{company_override_id}"): WRITE,
    ("DELETE", "/company-overrides/{company_override_id}"): WRITE,
    ("GET", "/webhooks"): READ,
    ("POST", "/webhooks"): WRITE,
    ("GET", "/webhooks/{webhook_id}"): READ,
    ("PUT", "/webhooks/{webhook_id}"): WRITE,
    ("DELETE", "/webhooks/{webhook_id}"): WRITE,
    ("POST", "/webhooks/{webhook_id}/test"): WRITE,
    ("GET", "/webhook-events"): READ,
}


def expected(route: tuple[str, str], kind: str) -> int | str:
    allowed = ACCESS[route]
    if allowed == PUBLIC:
        return "ok"
    if kind in ("none", "wrong"):
        return 401
    return "ok" if kind in allowed else 403


def served_operations(api: ApiServer) -> set[tuple[str, str]]:
    document = httpx.get(f"{api.base_url}/openapi.json", timeout=10).json()
    return {(method.upper(), path) for path, ops in document["paths"].items() for method in ops}


def concrete(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: f"{m.group(1)}_missing", path)


def test_every_route_by_every_key_kind(api: ApiServer) -> None:
    routes = served_operations(api)
    # The OpenAPI document lists every route but /openapi.json itself.
    assert routes | {("GET", "/openapi.json")} == set(ACCESS), "routes and the expected-access table differ"
    keys = {**api.keys, "wrong": "sch_dev_" + "x" * 32}
    headers = {kind: ({"X-Schematic-Api-Key": keys[kind]} if kind != "none" else {}) for kind in KINDS}
    want = {(m, p, k): expected((m, p), k) for (m, p) in sorted(ACCESS) for k in KINDS}
    actual: dict[tuple[str, str, str], int] = {}
    bodies: dict[tuple[str, str, str], dict[str, object]] = {}

    def call(client: httpx.Client, cell: tuple[str, str, str]) -> None:
        method, path, kind = cell
        response = client.request(method, concrete(path), content=b"{}", headers=headers[kind])
        actual[cell] = response.status_code
        if response.status_code in (401, 403):
            bodies[cell] = response.json()

    before = api.table_counts()
    with httpx.Client(base_url=api.base_url, timeout=30) as client:
        # Pass 1: every cell that must be refused; nothing may be written by them.
        for cell in (c for c, v in want.items() if v != "ok"):
            call(client, cell)
        after_refusals = api.table_counts()
        # Pass 2: the allowed cells, the secret key first on each route (the reference answer).
        for cell in sorted(
            (c for c, v in want.items() if v == "ok"), key=lambda c: (c[0], c[1], c[2] != "secret")
        ):
            call(client, cell)

    def normalised(cell: tuple[str, str, str]) -> int | str:
        status = actual[cell]
        if status in (401, 403):
            return status
        reference = actual.get((cell[0], cell[1], "secret"))
        return "ok" if status == reference else status

    got = {cell: normalised(cell) for cell in want}
    mismatches = {cell: (want[cell], got[cell]) for cell in want if want[cell] != got[cell]}
    assert mismatches == {}, f"(expected, got) per (method, path, key kind): {mismatches}"
    for cell, body in bodies.items():
        assert set(body) == {"error", "code", "details"}, (cell, body)
        assert body["code"] == ("unauthorized" if cell[2] in ("none", "wrong") else "forbidden"), (cell, body)
    assert after_refusals == before
