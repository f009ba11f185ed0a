"""Stripe objects as the API lists them, for the sweep benchmark.

One customer and one subscription are created on syncd's built-in Stripe emulator (the current
API version, every field Stripe renders: ~3 KB a subscription with its item, price and legacy
plan, ~0.7 KB a customer) and copied with new ids. A sweep of hand-trimmed objects (a few
hundred bytes) would flatter the figure: Postgres validates, compresses and writes every byte
of a mirrored object, and syncd encodes them all.

A copy is parsed from the template's JSON text, as the SDK parses a listed page: new objects
each time, nothing shared between them.
"""

from __future__ import annotations

import json
from typing import Any

from syncd.config import load_settings
from syncd.stripe_api import build_client
from syncd.stripe_emulator import BackgroundServer, EmulatorConfig
from syncd.stripe_sync.normalize import plain

try:
    import orjson

    _loads: Any = orjson.loads
except ImportError:  # pragma: no cover - the bench runs with syncd's [fast] extra
    _loads = json.loads

JSON = dict[str, Any]
MARK = "@N@"  # stands for the copy's name in every id


class StripeShapes:
    """Copies of an emulator-rendered customer and subscription (on ``product`` / ``price``,
    periods starting at ``created``), named ``cus_<name>``, ``sub_<name>``, ``si_<name>``."""

    def __init__(self, product: str, price: str, created: int) -> None:
        config = EmulatorConfig(start_time=created, auto_deliver=False)
        with BackgroundServer(config) as server:
            settings = load_settings(
                None,
                environ={
                    "SYNCD_STRIPE_API_KEY": "sk_test_bench",
                    "SYNCD_STRIPE_API_BASE": server.url,
                    "SYNCD_STRIPE_REQUESTS_PER_SECOND": "1000",
                },
            )
            v1 = build_client(settings)[0].v1
            prod = v1.products.create({"name": "Pro"})
            listed = v1.prices.create(
                {
                    "product": prod.id,
                    "unit_amount": 4900,
                    "currency": "usd",
                    "recurring": {"interval": "month"},
                }
            )
            customer = v1.customers.create(
                {
                    "name": "Acme Inc",
                    "email": "billing@acme.example",
                    "description": "Acme, annual contract",
                    "address": {
                        "line1": "1 Main St",
                        "city": "Springfield",
                        "postal_code": "12345",
                        "country": "US",
                    },
                    "metadata": {"crm_id": "0012345"},
                    "invoice_settings": {"default_payment_method": "pm_card_visa"},
                }
            )
            sub = v1.subscriptions.create(
                {"customer": customer.id, "items": [{"price": listed.id, "quantity": 3}]}
            )
            cus_json = plain(v1.customers.retrieve(customer.id))
            sub_json = plain(v1.subscriptions.retrieve(sub.id))
        cus_json["id"] = f"cus_{MARK}"
        sub_json.update(id=f"sub_{MARK}", customer=f"cus_{MARK}", latest_invoice=f"in_{MARK}")
        for item in sub_json["items"]["data"]:
            item.update(id=f"si_{MARK}", subscription=f"sub_{MARK}")
            item["price"].update(id=price, product=product)
            if isinstance(item.get("plan"), dict):
                item["plan"].update(id=price, product=product)
        sub_json["items"]["url"] = f"/v1/subscription_items?subscription=sub_{MARK}"
        self._customer = json.dumps(cus_json, separators=(",", ":"))
        self._subscription = json.dumps(sub_json, separators=(",", ":"))

    def customer(self, name: str, display: str) -> JSON:
        obj: JSON = _loads(self._customer.replace(MARK, name))
        obj["name"] = display
        return obj

    def subscription(self, name: str, quantity: int) -> JSON:
        obj: JSON = _loads(self._subscription.replace(MARK, name))
        for item in obj["items"]["data"]:
            item["quantity"] = quantity
        return obj
