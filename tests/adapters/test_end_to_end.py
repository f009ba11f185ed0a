"""The whole path, with nothing in-process: a plan change made in Stripe reaches all three
adapters.

``syncd run`` (SQLite, demo catalog, the built-in Stripe emulator, the Redis adapter) runs as a
subprocess. The test plays Stripe's customer: it subscribes a customer to Enterprise through
the emulator's API. The emulator sends signed webhooks to the daemon, which applies them and
publishes the change:

- Redis: the company's document in the replicator layout, read by the example host app's
  ``RedisReplica``; the gated route turns from 402 into 200;
- the outbound webhook endpoint registered through the official SDK receives
  ``company.plan_changed``, verified with the ``standardwebhooks`` package;
- the runtime API (the official SDK's ``check_flag``) answers from the daemon's own engine.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import redis
import stripe
from schematic.client import Schematic, SchematicConfig
from standardwebhooks import Webhook

from examples.host_app.app import create_app
from syncd.engine.wire import ENGINE_VERSION_KEY
from syncd_asgi import RedisReplica, header_identity

from ..cli_helpers import run_cli, syncd_env
from ..conftest import free_port
from ..test_daemon import start_daemon, stop
from ..webhooks.receiver import Receiver

pytestmark = [pytest.mark.redis, pytest.mark.anyio]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def wait_for(check: Callable[[], object], timeout: float = 20, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what} not met within {timeout} s"
        time.sleep(0.1)


async def test_stripe_plan_change_reaches_redis_asgi_and_webhooks(
    tmp_path: Path, redis_url: str, prefix: str
) -> None:
    emulator_port = free_port()
    config = tmp_path / "syncd.toml"
    config.write_text("[plugins.webhook]\nenabled = true\nbackoff_initial_s = 0.1\n")
    env = {
        "SYNCD_CONFIG": str(config),
        "SYNCD_REDIS_URL": redis_url,
        "SYNCD_REDIS_KEY_PREFIX": prefix,
        "SYNCD_STRIPE_EMULATOR_PORT": str(emulator_port),
    }
    receiver = Receiver().start()
    proc, port = start_daemon(tmp_path, **env)
    base = f"http://127.0.0.1:{port}"
    rclient = redis.Redis.from_url(redis_url)
    try:
        created = run_cli(
            "keys", "create", "--kind", "secret", "--name", "e2e", env=syncd_env(tmp_path, **env)
        )
        assert created.returncode == 0, created.stderr
        sdk = Schematic(created.stdout.strip(), SchematicConfig(base_url=base))
        hook = sdk.webhooks.create_webhook(
            name="e2e", url=receiver.url, request_types=["company.plan_changed"]
        ).data

        # Stripe's side: Enterprise is a product linked to the catalog's plan by metadata.
        stripe_client = stripe.StripeClient(
            "sk_test_emulator",
            base_addresses={"api": f"http://127.0.0.1:{emulator_port}"},
            max_network_retries=0,
        )
        v1 = stripe_client.v1
        product = v1.products.create({"name": "Enterprise", "metadata": {"syncd_plan": "enterprise"}})
        price = v1.prices.create(
            {
                "product": product.id,
                "unit_amount": 19900,
                "currency": "usd",
                "recurring": {"interval": "month"},
            }
        )
        customer = v1.customers.create(
            {"name": "Initech", "invoice_settings": {"default_payment_method": "pm_card_visa"}}
        ).id
        keys = {"stripe_customer_id": customer}

        replica = RedisReplica(redis_url, prefix=prefix, block_seconds=0.2)
        app = create_app(replica, identify=header_identity("x-customer", "stripe_customer_id"))
        try:
            assert replica.wait_ready(10)
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://host"
            ) as host:
                # The customer becomes a company on the fallback plan: the gate refuses SSO.
                wait_for(lambda: replica.check(keys, None, "sso") is not None, what="company in Redis")
                refused = await host.get("/sso", headers={"x-customer": customer})
                assert refused.status_code == 402 and refused.json()["feature"] == "sso"

                v1.subscriptions.create({"customer": customer, "items": [{"price": price.id}]})

                # ASGI: the replica follows the Redis change stream; the route opens.
                wait_for(lambda: replica.check(keys, None, "sso").value, what="sso in the replica")  # type: ignore[union-attr]
                assert (await host.get("/sso", headers={"x-customer": customer})).status_code == 200
        finally:
            replica.close()

        # Redis: the company document in the replicator layout, with Enterprise's plan.
        layout = f"{prefix}:company:{ENGINE_VERSION_KEY}"
        company_id = json.loads(rclient.get(f"{layout}:stripe_customer_id:{customer.lower()}") or "null")
        assert company_id, "the company's lookup key is not in Redis"
        doc = json.loads(rclient.get(f"{layout}:{company_id}") or "{}")
        assert doc["keys"]["stripe_customer_id"] == customer
        assert "sso" in {e["feature_key"] for e in doc["entitlements"]}

        # Webhooks: company.plan_changed, signed with the Standard Webhooks scheme.
        wait_for(lambda: receiver.ok(), what="webhook delivery")
        verifier = Webhook(hook.secret)
        events = [verifier.verify(r.body, r.headers) for r in receiver.ok()]
        changed = [e for e in events if e["action"] == "company.plan_changed"]
        assert changed, events
        last = changed[-1]["body"]
        assert last["company_id"] == company_id and last["actor_type"] == "stripe"
        assert (last["previous_base_plan"]["name"], last["base_plan"]["name"]) == ("Free", "Enterprise")

        # The runtime API agrees.
        assert sdk.check_flag("sso", company=keys) is True
    finally:
        rclient.close()
        code, stderr = stop(proc)
        receiver.stop()
    assert code == 0, stderr
