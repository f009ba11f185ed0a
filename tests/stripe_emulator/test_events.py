"""``GET /v1/events``: newest first, cursors, created ranges, type filters."""

from __future__ import annotations

import stripe
from starlette.testclient import TestClient

from .conftest import START
from .helpers import advance, get, post


def _make_events(api: TestClient, n: int) -> list[str]:
    """n ``customer.created`` events one minute apart; returns ids oldest first."""
    ids = []
    for k in range(n):
        post(api, "/v1/customers", {"email": f"c{k}@example.com"})
        ids.append(get(api, "/v1/events", {"limit": 1})["data"][0]["id"])
        advance(api, seconds=60)
    return ids


def test_newest_first_with_cursors(api: TestClient) -> None:
    ids = _make_events(api, 7)
    page = get(api, "/v1/events", {"limit": 3})
    assert [e["id"] for e in page["data"]] == ids[::-1][:3]
    assert page["has_more"] is True and page["url"] == "/v1/events"
    page2 = get(api, "/v1/events", {"limit": 3, "starting_after": page["data"][-1]["id"]})
    assert [e["id"] for e in page2["data"]] == ids[::-1][3:6]
    last = get(api, "/v1/events", {"limit": 3, "starting_after": page2["data"][-1]["id"]})
    assert [e["id"] for e in last["data"]] == [ids[0]] and last["has_more"] is False
    before = get(api, "/v1/events", {"limit": 2, "ending_before": ids[3]})
    assert [e["id"] for e in before["data"]] == [ids[5], ids[4]]
    assert before["has_more"] is True
    assert get(api, "/v1/events", {"ending_before": ids[6]})["data"] == []


def test_created_filters(api: TestClient) -> None:
    ids = _make_events(api, 5)
    in_range = get(api, "/v1/events", {"created[gte]": START + 60, "created[lt]": START + 180})
    assert [e["id"] for e in in_range["data"]] == [ids[2], ids[1]]
    assert [e["id"] for e in get(api, "/v1/events", {"created[gt]": START + 180})["data"]] == [ids[4]]
    assert [e["id"] for e in get(api, "/v1/events", {"created[lte]": START})["data"]] == [ids[0]]
    assert [e["id"] for e in get(api, "/v1/events", {"created": START + 120})["data"]] == [ids[2]]


def test_type_and_types_filters(api: TestClient) -> None:
    product = post(api, "/v1/products", {"name": "P"})
    post(api, f"/v1/products/{product['id']}", {"name": "Q"})
    post(api, "/v1/customers", {"email": "t@example.com"})
    assert [e["type"] for e in get(api, "/v1/events", {"type": "product.updated"})["data"]] == [
        "product.updated"
    ]
    assert {e["type"] for e in get(api, "/v1/events", {"type": "product.*"})["data"]} == {
        "product.created",
        "product.updated",
    }
    both = get(api, "/v1/events", {"types[]": ["customer.created", "product.created"]})
    assert [e["type"] for e in both["data"]] == ["customer.created", "product.created"]
    clash = api.get("/v1/events", params={"type": "a", "types[0]": "b"})
    assert clash.status_code == 400


def test_limit_bounds_and_bad_cursor(api: TestClient) -> None:
    assert api.get("/v1/events", params={"limit": 101}).status_code == 400
    assert api.get("/v1/events", params={"limit": 0}).status_code == 400
    assert api.get("/v1/events", params={"starting_after": "evt_nope"}).status_code == 400


def test_event_retrieve_and_request_info(api: TestClient) -> None:
    post(api, "/v1/customers", {"email": "r@example.com"}, **{"Idempotency-Key": "idem-1"})
    advance(api, days=1)
    event = get(api, "/v1/events")["data"][0]
    assert get(api, f"/v1/events/{event['id']}") == event
    assert event["request"]["idempotency_key"] == "idem-1"
    assert event["pending_webhooks"] == 0
    assert api.get("/v1/events/evt_missing").status_code == 404


def test_clock_driven_events_have_no_request(api: TestClient) -> None:
    product = post(api, "/v1/products", {"name": "P"})
    price = post(
        api,
        "/v1/prices",
        {"product": product["id"], "unit_amount": 100, "currency": "usd", "recurring[interval]": "day"},
    )
    cus = post(api, "/v1/customers", {"email": "d@example.com"})
    post(api, "/v1/subscriptions", {"customer": cus["id"], "items[0][price]": price["id"]})
    advance(api, days=1)
    renewal = get(api, "/v1/events", {"type": "invoice.created", "limit": 1})["data"][0]
    assert renewal["request"] == {"id": None, "idempotency_key": None}
    assert renewal["created"] == START + 86_400


def test_sdk_auto_paging_walks_every_event(stripe_client: stripe.StripeClient) -> None:
    c = stripe_client
    for k in range(25):
        c.v1.customers.create({"email": f"p{k}@example.com"})
    events = list(c.v1.events.list({"limit": 4}).auto_paging_iter())
    assert len(events) == 25
    assert len({e.id for e in events}) == 25
    customers = list(c.v1.customers.list({"limit": 10}).auto_paging_iter())
    assert [cu.email for cu in customers] == [f"p{k}@example.com" for k in reversed(range(25))]
