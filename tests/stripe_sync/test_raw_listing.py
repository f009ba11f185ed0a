"""Listing and fetching read Stripe's JSON as it is sent (``raw_request``), not through the
SDK's typed objects: the same objects, the same pagination, the same errors."""

from __future__ import annotations

import pytest
import stripe

from syncd.stripe_sync import mirror
from syncd.stripe_sync.normalize import plain
from syncd.stripe_sync.sweep import stripe_now

from .harness import World


def test_listed_and_fetched_objects_equal_what_the_sdk_gives(world: World) -> None:
    ids = world.catalog()
    v1 = world.client.v1
    customers = [world.customer(name=f"Listed {n}") for n in range(3)]
    for customer in customers:
        v1.subscriptions.create({"customer": customer, "items": [{"price": ids["pro_price"], "quantity": 2}]})
    for kind, lister in (
        ("customer", v1.customers.list),
        ("subscription", v1.subscriptions.list),
        ("product", v1.products.list),
        ("price", v1.prices.list),
    ):
        params = {"limit": 100, **({"status": "all"} if kind == "subscription" else {})}
        expected = [plain(o) for o in lister(params).auto_paging_iter()]  # type: ignore[operator]
        listed = list(mirror.iter_all(world.client, kind))
        assert listed == expected and listed, kind
        assert all(type(o.get("id")) is str for o in listed)
        first = str(expected[0]["id"])
        assert mirror.fetch(world.client, kind, first) == expected[0]


def test_listing_pages_past_a_hundred_and_resumes_after_a_cursor(world: World) -> None:
    v1 = world.client.v1
    made = {v1.customers.create({"name": f"Paged {n}"}).id for n in range(230)}
    listed = [str(o["id"]) for o in mirror.iter_all(world.client, "customer")]
    assert set(listed) == made and len(listed) == len(made)  # three pages, no repeats
    after = listed[99]
    rest = [str(o["id"]) for o in mirror.iter_all(world.client, "customer", starting_after=after)]
    assert rest == listed[100:]


def test_a_missing_object_is_none_and_other_errors_raise(world: World) -> None:
    assert mirror.fetch(world.client, "customer", "cus_does_not_exist") is None
    customer = world.customer(name="Flaky")
    # One 500, then the object: the client's retries apply to raw requests too.
    world.faults(server_error_count=1, server_error_should_retry=True, paths=[f"/v1/customers/{customer}"])
    fetched = mirror.fetch(world.client, "customer", customer)
    assert fetched is not None and fetched["name"] == "Flaky"
    assert world.control.get("/faults").json()["injected"]["server_error"] == 1  # then retried
    world.faults(server_error_count=100, paths=["/v1/customers"])
    with pytest.raises(stripe.APIError):
        mirror.fetch(world.client, "customer", customer)
    with pytest.raises(stripe.APIError):
        list(mirror.iter_all(world.client, "customer"))


def test_stripe_now_reads_the_newest_event(world: World) -> None:
    world.customer(name="Eventful")
    newest = max(int(e.created) for e in world.client.v1.events.list({"limit": 100}).data)
    assert stripe_now(world.client) == newest > 0


def test_a_parameter_named_like_a_client_option_is_refused(world: World) -> None:
    with pytest.raises(ValueError, match="named like client options"):
        mirror.get_json(world.client, "/v1/customers", {"limit": 1, "stripe_account": "acct_x"})
