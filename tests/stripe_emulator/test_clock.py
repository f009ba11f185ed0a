"""The controllable clock, reset, the test-clock API and concurrent requests."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import httpx
import pytest
import stripe
from starlette.testclient import TestClient

from syncd.stripe_emulator.clock import Clock, add_interval

from .conftest import DAY, START
from .helpers import get, post


def ts(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp())  # type: ignore[misc]


def test_month_arithmetic_clamps_to_month_end() -> None:
    jan31 = ts(2026, 1, 31)
    assert add_interval(jan31, "month") == ts(2026, 2, 28)
    assert add_interval(jan31, "month", 2) == ts(2026, 3, 31)
    assert add_interval(ts(2024, 2, 29), "year") == ts(2025, 2, 28)
    assert add_interval(0, "week", 2) == 14 * DAY


def test_clock_is_frozen_and_only_moves_forward() -> None:
    clock = Clock(100)
    assert clock.now() == 100
    clock.set(150)
    with pytest.raises(ValueError, match="backwards"):
        clock.set(120)


def test_time_stands_still_between_requests(api: TestClient) -> None:
    first = post(api, "/v1/customers", {})
    second = post(api, "/v1/customers", {})
    assert first["created"] == second["created"] == START
    assert get(api, "/_emulator/clock")["now"] == START


def test_advance_validation_and_forms(api: TestClient) -> None:
    assert api.post("/_emulator/clock/advance", json={"to": START - 1}).status_code == 400
    assert api.post("/_emulator/clock/advance", json={"seconds": "x"}).status_code == 400
    assert api.post("/_emulator/clock/advance", json={"to": START + 10}).json()["now"] == START + 10
    assert api.post("/_emulator/clock/advance", json={"days": 1}).json()["now"] == START + 10 + DAY


def test_reset_forgets_everything(api: TestClient) -> None:
    post(api, "/v1/customers", {})
    api.post("/_emulator/faults", json={"rate_limit_count": 5}).raise_for_status()
    api.post("/_emulator/settings", json={"dunning_final_action": "unpaid"}).raise_for_status()
    api.post("/_emulator/reset", json={"start_time": START + 5}).raise_for_status()
    assert get(api, "/v1/customers")["data"] == []
    assert get(api, "/v1/events")["data"] == []
    assert get(api, "/_emulator/clock")["now"] == START + 5
    assert get(api, "/_emulator/faults")["rate_limit_count"] == 0
    assert get(api, "/_emulator/settings")["dunning_final_action"] == "cancel"


def test_unknown_fault_or_setting_is_rejected(api: TestClient) -> None:
    assert api.post("/_emulator/faults", json={"explode": True}).status_code == 400
    assert api.post("/_emulator/settings", json={"explode": True}).status_code == 400


def test_test_clock_api_advances_the_emulator(stripe_client: stripe.StripeClient) -> None:
    c = stripe_client
    clock = c.v1.test_helpers.test_clocks.create({"frozen_time": START, "name": "demo"})
    assert clock.status == "ready" and clock.frozen_time == START
    product = c.v1.products.create({"name": "P"})
    price = c.v1.prices.create(
        {"product": product.id, "unit_amount": 100, "currency": "usd", "recurring": {"interval": "month"}}
    )
    cus = c.v1.customers.create({"test_clock": clock.id})
    assert cus.test_clock == clock.id
    sub = c.v1.subscriptions.create({"customer": cus.id, "items": [{"price": price.id}]})
    clock = c.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": START + 40 * DAY})
    assert clock.frozen_time == START + 40 * DAY and clock.status == "ready"
    assert len(c.v1.invoices.list({"subscription": sub.id}).data) == 2
    types = [e.type for e in c.v1.events.list({"type": "test_helpers.test_clock.*"}).data]
    assert types == [
        "test_helpers.test_clock.ready",
        "test_helpers.test_clock.advancing",
        "test_helpers.test_clock.created",
    ]
    with pytest.raises(stripe.InvalidRequestError):
        c.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": START})
    assert c.v1.test_helpers.test_clocks.delete(clock.id).deleted is True


def test_concurrent_requests_keep_state_consistent(
    stripe_client: stripe.StripeClient, control: httpx.Client
) -> None:
    c = stripe_client
    with ThreadPoolExecutor(max_workers=8) as pool:
        created = list(pool.map(lambda n: c.v1.customers.create({"email": f"{n}@x.com"}).id, range(40)))
        list(
            pool.map(
                lambda _: control.post("/clock/advance", json={"seconds": 1}).raise_for_status(), range(8)
            )
        )
    assert len(set(created)) == 40
    listed = list(c.v1.customers.list({"limit": 100}).auto_paging_iter())
    assert {cu.id for cu in listed} == set(created)
    assert len(c.v1.events.list({"limit": 100, "type": "customer.created"}).data) == 40
    assert control.get("/clock").json()["now"] == START + 8


def test_ids_are_reproducible_under_a_seed() -> None:
    from syncd.stripe_emulator import EmulatorConfig, create_app

    def run(extra_reads: int) -> list[str]:
        app = create_app(EmulatorConfig(start_time=START, seed=5, auto_deliver=False))
        with TestClient(app, headers={"Authorization": "Bearer sk_test_seed"}) as client:
            ids = [post(client, "/v1/customers", {})["id"]]
            for _ in range(extra_reads):
                get(client, "/v1/customers")
            ids.append(post(client, "/v1/products", {"name": "P"})["id"])
            ids += [e["id"] for e in get(client, "/v1/events")["data"]]
        app.state.emulator.close()
        return ids

    assert run(0) == run(3)
