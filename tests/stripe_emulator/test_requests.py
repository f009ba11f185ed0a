"""Request handling: auth, errors, idempotency keys, unknown parameters and routes."""

from __future__ import annotations

import pytest
import stripe
from starlette.testclient import TestClient

from .helpers import catalog, post


def test_missing_and_live_keys_are_refused(api: TestClient) -> None:
    response = api.get("/v1/customers", headers={"Authorization": ""})
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert api.get("/v1/customers", headers={"Authorization": "Bearer sk_live_x"}).status_code == 401
    basic = api.get("/v1/customers", auth=("sk_test_basic", ""))
    assert basic.status_code == 200


def test_missing_object_is_404_resource_missing(stripe_client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as err:
        stripe_client.v1.customers.retrieve("cus_nope")
    assert err.value.http_status == 404
    assert err.value.code == "resource_missing"
    assert err.value.param == "id"
    assert "No such customer: 'cus_nope'" in str(err.value)


def test_unknown_and_missing_parameters(api: TestClient) -> None:
    response = api.post("/v1/customers", data={"emial": "typo@example.com"})
    assert response.status_code == 400
    assert response.json()["error"] | {} == {
        **response.json()["error"],
        "code": "parameter_unknown",
        "param": "emial",
    }
    response = api.post("/v1/prices", data={"currency": "usd", "unit_amount": 1})
    assert response.json()["error"]["code"] == "parameter_missing"


def test_unknown_route_is_stripe_shaped_404(api: TestClient) -> None:
    response = api.get("/v1/not_a_thing")
    assert response.status_code == 404
    assert "Unrecognized request URL" in response.json()["error"]["message"]


def test_response_headers(api: TestClient) -> None:
    response = api.get("/v1/customers", headers={"Stripe-Version": "2026-10-28.endive"})
    assert response.headers["request-id"].startswith("req_")
    assert response.headers["stripe-version"] == "2026-10-28.endive"


def test_idempotent_replay_returns_the_stored_response(api: TestClient) -> None:
    first = api.post("/v1/customers", data={"email": "i@example.com"}, headers={"Idempotency-Key": "k1"})
    second = api.post("/v1/customers", data={"email": "i@example.com"}, headers={"Idempotency-Key": "k1"})
    assert first.json() == second.json()
    assert second.headers["idempotent-replayed"] == "true"
    assert len(api.get("/v1/customers").json()["data"]) == 1
    events = api.get("/v1/events").json()["data"]
    assert len(events) == 1
    assert events[0]["request"]["idempotency_key"] == "k1"
    assert events[0]["request"]["id"] == first.headers["request-id"]


def test_idempotency_key_reuse_with_other_params_is_rejected(stripe_client: stripe.StripeClient) -> None:
    c = stripe_client
    c.v1.customers.create({"email": "a@example.com"}, {"idempotency_key": "same"})
    with pytest.raises(stripe.IdempotencyError) as err:
        c.v1.customers.create({"email": "b@example.com"}, {"idempotency_key": "same"})
    assert err.value.http_status == 400
    with pytest.raises(stripe.IdempotencyError):
        c.v1.products.create({"name": "x"}, {"idempotency_key": "same"})


def test_validation_errors_are_not_stored_under_the_key(api: TestClient) -> None:
    bad = api.post("/v1/customers", data={"nope": "1"}, headers={"Idempotency-Key": "k2"})
    assert bad.status_code == 400
    good = api.post("/v1/customers", data={"nope": "1"}, headers={"Idempotency-Key": "k2"})
    assert good.status_code == 400 and "idempotent-replayed" not in good.headers


def test_card_errors_are_stored_and_replayed(api: TestClient) -> None:
    _, price = catalog(api)
    cus = post(
        api, "/v1/customers", {"invoice_settings[default_payment_method]": "pm_card_chargeCustomerFail"}
    )
    data = {"customer": cus["id"], "items[0][price]": price, "payment_behavior": "error_if_incomplete"}
    first = api.post("/v1/subscriptions", data=data, headers={"Idempotency-Key": "k3"})
    second = api.post("/v1/subscriptions", data=data, headers={"Idempotency-Key": "k3"})
    assert first.status_code == second.status_code == 402
    assert second.headers["idempotent-replayed"] == "true"


def test_metadata_update_and_unset(api: TestClient) -> None:
    cus = post(api, "/v1/customers", {"metadata[a]": "1", "metadata[b]": "2"})
    cus = post(api, f"/v1/customers/{cus['id']}", {"metadata[a]": "", "metadata[c]": "3"})
    assert cus["metadata"] == {"b": "2", "c": "3"}
    event = api.get("/v1/events", params={"type": "customer.updated"}).json()["data"][0]
    assert event["data"]["previous_attributes"] == {"metadata": {"a": "1", "c": None}}
    cus = post(api, f"/v1/customers/{cus['id']}", {"metadata": ""})
    assert cus["metadata"] == {}


def test_price_archive_and_lookup_key_transfer(api: TestClient) -> None:
    product, price = catalog(api)
    post(api, f"/v1/prices/{price}", {"lookup_key": "pro"})
    clash = api.post(
        "/v1/prices", data={"product": product, "unit_amount": 2, "currency": "usd", "lookup_key": "pro"}
    )
    assert clash.status_code == 400
    newer = post(
        api,
        "/v1/prices",
        {
            "product": product,
            "unit_amount": 2,
            "currency": "usd",
            "lookup_key": "pro",
            "transfer_lookup_key": "true",
        },
    )
    assert api.get(f"/v1/prices/{price}").json()["lookup_key"] is None
    assert newer["type"] == "one_time" and newer["recurring"] is None
    archived = post(api, f"/v1/prices/{price}", {"active": "false"})
    assert archived["active"] is False
    assert [p["id"] for p in api.get("/v1/prices", params={"active": "true"}).json()["data"]] == [newer["id"]]
    types = [e["type"] for e in api.get("/v1/events").json()["data"]]
    assert types.count("price.updated") == 3
    assert api.delete(f"/v1/products/{product}").status_code == 400
