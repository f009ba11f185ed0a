"""The slice of catalog push localstripe supports: products (it has no Prices API)."""

from __future__ import annotations

import httpx
import pytest
import stripe
from sqlmodel import Session, col, select

from syncd.models import Plan
from tests.stripe_sync.harness import World

from .helpers import catalog, run


def test_products_pushed_once_and_missing_prices_api_is_a_clear_error(
    ls_world: World, localstripe: str
) -> None:
    catalog(ls_world)
    with pytest.raises(stripe.StripeError) as first:
        run(ls_world)
    assert first.value.http_status == 404, first.value  # POST /v1/prices: not in localstripe
    products = httpx.get(f"{localstripe}/v1/products", auth=("sk_test_emulator", "")).json()["data"]
    assert [p["metadata"]["syncd_plan"] for p in products] == ["boost"]
    assert products[0]["metadata"]["syncd_origin"] == "syncd"
    with Session(ls_world.engine) as session:
        boost = session.exec(select(Plan).where(col(Plan.key) == "boost")).one()
        assert boost.stripe_product_id == products[0]["id"]  # linked before the failure

    with pytest.raises(stripe.StripeError):
        run(ls_world)  # resumes: the product is found, not created again
    again = httpx.get(f"{localstripe}/v1/products", auth=("sk_test_emulator", "")).json()["data"]
    assert [p["id"] for p in again] == [products[0]["id"]]
