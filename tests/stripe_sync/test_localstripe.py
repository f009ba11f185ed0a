"""Cross-check against localstripe, an independent fake run as a separate process (GPL: only run).

localstripe renders events in API 2017-08-15 (legacy ``plan`` objects, periods on the
subscription), has no Prices (legacy Plans instead), sends no ``customer.subscription.updated``
(a plan change only shows through its invoice events), and delivers each webhook once about a
second after the event, in no particular order.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from syncd.stripe_sync.reconcile import verify
from tests.conftest import free_port, unavailable

from .harness import World

SECRET = "whsec_localstripe_cross_check"
LAUNCHER = Path(__file__).with_name("run_localstripe.py")


@pytest.fixture(scope="module")
def localstripe() -> Iterator[str]:
    command = os.environ.get("SYNCD_LOCALSTRIPE")
    if not command or not Path(command).exists():
        unavailable("localstripe", "SYNCD_LOCALSTRIPE is not set to its executable (`make test` sets it)")
    python = Path(str(command)).with_name("python")
    port = free_port()
    proc = subprocess.Popen(
        [str(python), str(LAUNCHER), "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            httpx.get(f"{url}/v1/customers", timeout=0.5)
            break
        except httpx.TransportError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"localstripe did not start: {proc.stderr.read() if proc.stderr else b''!r}")
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def ls_world(localstripe: str, sqlite_url: str, tmp_path: Path) -> Iterator[World]:
    httpx.delete(f"{localstripe}/_config/data").raise_for_status()
    world = World(None, sqlite_url, tmp_path, api_base=localstripe, webhook_secret=SECRET)
    hook = {"url": f"{world.url}/webhooks/stripe", "secret": SECRET}
    httpx.post(f"{localstripe}/_config/webhooks/syncd", data=hook).raise_for_status()
    yield world
    # localstripe cannot delete a hook: mute it.
    httpx.post(f"{localstripe}/_config/webhooks/syncd", json={**hook, "events": []})
    world.close()


def wait_for(world: World, done: Callable[[], bool], timeout: float = 15.0) -> None:
    """Apply deliveries as they arrive until ``done()``."""
    deadline = time.monotonic() + timeout
    while True:
        world.apply()
        if done():
            return
        assert time.monotonic() < deadline, [(e.event_type, e.status) for e in world.inbox()]
        time.sleep(0.2)


def has(world: World, event_type: str, count: int = 1) -> Callable[[], bool]:
    return lambda: sum(e.event_type == event_type and e.status == "applied" for e in world.inbox()) >= count


def test_customer_plan_subscription_change_cancel_and_failed_payment(ls_world: World) -> None:
    world, v1 = ls_world, ls_world.client.v1
    pro, enterprise = v1.products.create({"name": "Pro"}), v1.products.create({"name": "Enterprise"})
    world.apply_catalog({"pro": pro.id, "enterprise": enterprise.id, "analytics": "prod_0", "team": "prod_1"})
    usd = {"currency": "usd"}
    pro_month = v1.plans.create({"product": pro.id, "amount": 4900, "interval": "month", **usd})
    ent_year = v1.plans.create({"product": enterprise.id, "amount": 199000, "interval": "year", **usd})

    cus = v1.customers.create({"email": "a@example.com", "name": "Acme"})
    pm = v1.payment_methods.attach("pm_card_visa", {"customer": cus.id})
    v1.customers.update(cus.id, {"invoice_settings": {"default_payment_method": pm.id}})
    sub = v1.subscriptions.create({"customer": cus.id, "items": [{"plan": pro_month.id}]})
    wait_for(world, lambda: world.base(cus.id) == "pro" and has(world, "customer.created")())
    assert all(e.api_version == "2017-08-15" for e in world.inbox())
    assert world.company(cus.id).billing_base is not None

    # Change plan: no subscription event, only the new invoice's events reveal it.
    item = sub["items"]["data"][0]
    v1.subscriptions.update(sub.id, {"items": [{"id": item.id, "plan": ent_year.id}]})
    wait_for(world, lambda: world.base(cus.id) == "enterprise")

    v1.subscriptions.cancel(sub.id)
    wait_for(world, has(world, "customer.subscription.deleted"))
    assert world.company(cus.id).base is None  # fallback derived by the loader

    # A card that fails: the subscription stays incomplete and grants nothing.
    bad = v1.customers.create({"email": "b@example.com"})
    bad_pm = v1.payment_methods.attach("pm_card_chargeCustomerFail", {"customer": bad.id})
    v1.customers.update(bad.id, {"invoice_settings": {"default_payment_method": bad_pm.id}})
    failed = v1.subscriptions.create({"customer": bad.id, "items": [{"plan": pro_month.id}]})
    assert failed.status == "incomplete"
    wait_for(world, has(world, "customer.subscription.created", 2))
    assert world.company(bad.id).base == "free"  # the initial plan, never Pro

    # Everything localstripe lists agrees with the mirror and the plan assignments.
    report = verify(world.engine, world.client)
    assert report.clean, report.lines


def test_billing_customer_and_immediate_plan_change(ls_world: World) -> None:
    """syncd -> Stripe on localstripe: the customer syncd creates, a subscribe and an upgrade
    pushed by ``change_plan``; the local plan follows at once and the webhooks agree."""
    from syncd.billing.customers import ensure_customer

    from .billing_helpers import change, link_prices

    world, v1 = ls_world, ls_world.client.v1
    pro, enterprise = v1.products.create({"name": "Pro"}), v1.products.create({"name": "Enterprise"})
    world.apply_catalog({"pro": pro.id, "enterprise": enterprise.id, "analytics": "prod_0", "team": "prod_1"})
    usd = {"currency": "usd"}
    pro_month = v1.plans.create({"product": pro.id, "amount": 4900, "interval": "month", **usd})
    ent_month = v1.plans.create({"product": enterprise.id, "amount": 19900, "interval": "month", **usd})
    addon = v1.plans.create({"product": pro.id, "amount": 1900, "interval": "month", **usd})
    link_prices(
        world, {"pro_price": pro_month.id, "enterprise_price": ent_month.id, "analytics_price": addon.id}
    )

    from syncd.db import session_scope
    from syncd.services.companies import upsert_company

    with session_scope(world.engine) as session:
        company, _ = upsert_company(session, keys={"acme_id": "acme"}, name="Acme")
        company_id = company.id
    with session_scope(world.engine) as session:
        customer = ensure_customer(session, world.client, company_id)
    assert v1.customers.retrieve(customer).metadata["syncd_company_id"] == company_id
    pm = v1.payment_methods.attach("pm_card_visa", {"customer": customer})
    v1.customers.update(customer, {"invoice_settings": {"default_payment_method": pm.id}})

    first = change(world, company_id, "pro", require_payment=False)
    assert first.kind == "subscribe" and world.base(customer) == "pro"
    up = change(world, company_id, "enterprise", require_payment=False)
    assert (up.kind, up.subscription_id) == ("upgrade", first.subscription_id)
    assert world.base(customer) == "enterprise"  # local follows Stripe's answer at once
    assert (
        v1.subscriptions.retrieve(str(up.subscription_id))["items"]["data"][0]["plan"]["id"] == ent_month.id
    )
    wait_for(world, has(world, "customer.subscription.created"))
    time.sleep(1.5)  # localstripe delivers about a second after the event
    world.apply()
    assert world.base(customer) == "enterprise"
    report = verify(world.engine, world.client)
    assert report.clean, report.lines
