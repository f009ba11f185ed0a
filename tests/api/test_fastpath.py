"""The lean path for ``POST /flags/{key}/check`` answers exactly like the full Starlette app.

A body with an unknown extra field is ignored by the app's model but sends the request down
the full stack, so the two answers to the same check can be compared.
"""

from __future__ import annotations

import pytest

from syncd.api.fastpath import flag_key_of

from .conftest import ApiServer, unique


def _company(api: ApiServer) -> dict[str, str]:
    keys = {"account": unique("acct")}
    with api.http("secret") as http:
        assert http.post("/companies", json={"keys": keys, "name": "Acme"}).status_code == 200
    return keys


@pytest.mark.parametrize("flag", ["api-calls", "sso", "ai-assistant", "new-dashboard"])
def test_fast_and_full_paths_give_the_same_answer(demo_api: ApiServer, flag: str) -> None:
    keys = _company(demo_api)
    with demo_api.http("publishable") as http:
        fast = http.post(f"/flags/{flag}/check", json={"company": keys})
        full = http.post(f"/flags/{flag}/check", json={"company": keys, "unused": 1})
        nobody = http.post(f"/flags/{flag}/check", json={"company": {"account": unique("none")}})
        no_context = http.post(f"/flags/{flag}/check", content=b"")
    assert fast.status_code == full.status_code == nobody.status_code == no_context.status_code == 200
    assert fast.json() == full.json()
    assert fast.headers["content-type"] == full.headers["content-type"] == "application/json"
    assert fast.headers["x-request-id"] and fast.headers["x-request-id"] != full.headers["x-request-id"]
    assert nobody.json()["data"]["reason"] == "Company not found"
    assert no_context.json()["data"]["company_id"] is None


def test_errors_keep_the_full_apps_shape(demo_api: ApiServer) -> None:
    keys = _company(demo_api)
    with demo_api.http("publishable") as http:
        unknown_flag = http.post("/flags/no-such-flag/check", json={"company": keys})
        bad_json = http.post("/flags/sso/check", content=b"{not json")
        wrong_type = http.post("/flags/sso/check", json={"company": {"account": 5}})
    with demo_api.http(None) as anonymous:
        no_key = anonymous.post("/flags/sso/check", json={"company": keys})
    with demo_api.http("secret") as http:
        http.headers["x-schematic-api-key"] = "sch_dev_not-a-key"
        bad_key = http.post("/flags/sso/check", json={"company": keys})
    assert (unknown_flag.status_code, unknown_flag.json()["code"]) == (404, "flag_not_found")
    assert (bad_json.status_code, bad_json.json()["code"]) == (400, "invalid_json")
    assert (wrong_type.status_code, wrong_type.json()["code"]) == (400, "invalid_body")
    assert (no_key.status_code, bad_key.status_code) == (401, 401)


def test_client_request_id_is_echoed(demo_api: ApiServer) -> None:
    keys = _company(demo_api)
    with demo_api.http("secret") as http:
        response = http.post("/flags/sso/check", json={"company": keys}, headers={"x-request-id": "req-42"})
    assert response.headers["x-request-id"] == "req-42"


def test_only_the_templated_check_route_is_matched() -> None:
    assert flag_key_of("POST", "/flags/sso/check") == "sso"
    assert flag_key_of("POST", "/flags/check") is None
    assert flag_key_of("POST", "/flags/check-bulk") is None
    assert flag_key_of("POST", "/flags/a/b/check") is None
    assert flag_key_of("GET", "/flags/sso/check") is None
