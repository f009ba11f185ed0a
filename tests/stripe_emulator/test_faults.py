"""Injected 429s and 5xx, observed through the SDK's own retry logic."""

from __future__ import annotations

import httpx
import pytest
import stripe

from syncd.stripe_emulator import BackgroundServer

from .conftest import API_KEY


def retrying(server: BackgroundServer, retries: int = 2) -> stripe.StripeClient:
    return stripe.StripeClient(
        api_key=API_KEY, base_addresses={"api": server.url}, max_network_retries=retries
    )


def test_5xx_is_retried_by_the_sdk_with_the_same_idempotency_key(
    server: BackgroundServer, control: httpx.Client
) -> None:
    control.post("/faults", json={"server_error_count": 2, "server_error_status": 503}).raise_for_status()
    customer = retrying(server).v1.customers.create({"email": "retry@example.com"})
    faults = control.get("/faults").json()
    assert faults["injected"]["server_error"] == 2
    assert faults["server_error_count"] == 0
    # exactly one customer and one event despite three attempts
    client = retrying(server, 0)
    assert [c.id for c in client.v1.customers.list().data] == [customer.id]
    assert len(client.v1.events.list({"type": "customer.created"}).data) == 1


def test_5xx_surfaces_without_retries(server: BackgroundServer, control: httpx.Client) -> None:
    control.post("/faults", json={"server_error_count": 1}).raise_for_status()
    with pytest.raises(stripe.APIError) as err:
        retrying(server, 0).v1.customers.list()
    assert err.value.http_status == 500
    assert retrying(server, 0).v1.customers.list().data == []  # the fault was used up


def test_429_is_not_retried_by_default_and_carries_retry_after(
    server: BackgroundServer, control: httpx.Client
) -> None:
    control.post("/faults", json={"rate_limit_count": 1, "retry_after": 2}).raise_for_status()
    with pytest.raises(stripe.RateLimitError) as err:
        retrying(server).v1.products.list()
    assert err.value.http_status == 429
    assert err.value.headers is not None and err.value.headers["Retry-After"] == "2"
    assert err.value.json_body is not None
    assert err.value.json_body["error"]["code"] == "rate_limit"


def test_429_with_should_retry_is_retried(server: BackgroundServer, control: httpx.Client) -> None:
    control.post("/faults", json={"rate_limit_count": 1, "rate_limit_should_retry": True}).raise_for_status()
    product = retrying(server).v1.products.create({"name": "Patient"})
    assert product.name == "Patient"
    assert control.get("/faults").json()["injected"]["rate_limit"] == 1


def test_fraction_faults_are_reproducible_with_a_seed(
    server: BackgroundServer, control: httpx.Client
) -> None:
    def pattern() -> list[int]:
        control.post(
            "/faults", json={"server_error_fraction": 0.5, "seed": 99, "paths": ["/v1/products"]}
        ).raise_for_status()
        return [
            httpx.get(f"{server.url}/v1/products", headers={"Authorization": f"Bearer {API_KEY}"}).status_code
            for _ in range(12)
        ]

    first, second = pattern(), pattern()
    assert first == second
    assert {200, 500} == set(first)
    # other paths are untouched by a path-scoped fault
    assert (
        httpx.get(f"{server.url}/v1/customers", headers={"Authorization": f"Bearer {API_KEY}"}).status_code
        == 200
    )
    control.delete("/faults").raise_for_status()
