"""Small helpers shared by the emulator tests (raw form calls through TestClient)."""

from __future__ import annotations

from typing import Any

from starlette.testclient import TestClient


def post(api: TestClient, path: str, data: dict[str, Any] | None = None, **headers: str) -> Any:
    response = api.post(path, data=data or {}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def get(api: TestClient, path: str, params: dict[str, Any] | None = None) -> Any:
    response = api.get(path, params=params or {})
    assert response.status_code == 200, response.text
    return response.json()


def advance(api: TestClient, **body: int) -> Any:
    response = api.post("/_emulator/clock/advance", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def catalog(api: TestClient, amount: int = 1000, interval: str = "month") -> tuple[str, str]:
    """A product and a recurring price; returns (product id, price id)."""
    product = post(api, "/v1/products", {"name": "Pro"})
    price = post(
        api,
        "/v1/prices",
        {"product": product["id"], "unit_amount": amount, "currency": "usd", "recurring[interval]": interval},
    )
    return product["id"], price["id"]


def customer(api: TestClient, pm: str | None = "pm_card_visa") -> str:
    data = {"email": "c@example.com"}
    if pm is not None:
        data["invoice_settings[default_payment_method]"] = pm
    return str(post(api, "/v1/customers", data)["id"])
