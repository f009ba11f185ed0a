"""A small world for Stripe -> syncd tests: the emulator, a daemon serving the real webhook
endpoint on loopback, a demo catalog linked to emulator products, and helpers to deliver,
apply and inspect."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from sqlmodel import Session, col, select

from syncd.api import create_app
from syncd.catalog import apply_catalog, loads
from syncd.config import load_settings
from syncd.daemon import Daemon
from syncd.db import session_scope
from syncd.models import (
    ChangeLog,
    CompanyKey,
    CompanyPlan,
    CompanyTrait,
    InboxEvent,
    Plan,
    TraitDefinition,
    utcnow,
)
from syncd.state import EntitlementStore
from syncd.stripe_api import build_client
from syncd.stripe_emulator import BackgroundServer
from syncd.stripe_sync.apply import ApplyOptions, ApplyResult, apply_pending
from syncd.stripe_sync.mapping import ts

CATALOG = """
[settings]
initial_plan = "free"
fallback_plan = "free"

[traits]
seats_allocated = {{ entity = "company", type = "number" }}
seats_used = {{ entity = "company", type = "number" }}

[[features]]
key = "reports"
name = "Reports"
type = "boolean"

[[features]]
key = "seats"
name = "Seats"
type = "trait"
trait = "seats_used"

[[features]]
key = "analytics"
name = "Analytics"
type = "boolean"

[[plans]]
key = "free"
name = "Free"

[[plans]]
key = "pro"
name = "Pro"
stripe_product = "{pro}"
prices = {{ month = 4900 }}
[plans.entitlements]
reports = {{ type = "boolean", value = true }}

[[plans]]
key = "enterprise"
name = "Enterprise"
stripe_product = "{enterprise}"
prices = {{ month = 19900 }}
[plans.entitlements]
reports = {{ type = "boolean", value = true }}
seats = {{ type = "trait", trait = "seats_allocated", price_behavior = "pay_in_advance" }}

[[plans]]
key = "team"
name = "Team (linked by product metadata)"

[[plans]]
key = "analytics"
name = "Analytics add-on"
type = "add_on"
stripe_product = "{analytics}"
prices = {{ month = 1900 }}
[plans.entitlements]
analytics = {{ type = "boolean", value = true }}
"""


@dataclass
class Company:
    id: str
    base: str | None
    add_ons: list[str]
    rows: list[CompanyPlan]
    traits: dict[str, str]

    @property
    def billing_base(self) -> CompanyPlan | None:
        return next((r for r in self.rows if r.role == "base" and r.source == "billing"), None)


class World:
    """The emulator + a daemon (webhook endpoint on loopback) + helpers."""

    def __init__(
        self,
        emulator: BackgroundServer | None,
        database_url: str,
        tmp_path: Path,
        *,
        api_base: str | None = None,
        webhook_secret: str | None = None,
        **env: str,
    ) -> None:
        self.server = emulator
        base = api_base or (emulator.url if emulator is not None else "")
        self.control = httpx.Client(base_url=f"{base}/_emulator", timeout=30)
        (tmp_path / "syncd.toml").write_text("")
        self.settings = load_settings(
            tmp_path / "syncd.toml",
            environ={
                "SYNCD_DATABASE_URL": database_url,
                "SYNCD_CATALOG_PATH": "",
                "SYNCD_STRIPE_API_KEY": "sk_test_emulator",
                "SYNCD_STRIPE_API_BASE": base,
                "SYNCD_STRIPE_REQUESTS_PER_SECOND": "1000",
                "SYNCD_SCHEDULER_ENABLED": "false",
                **env,
            },
        )
        self.daemon = Daemon(self.settings)
        self.daemon.prepare()
        secret = webhook_secret or (emulator.emulator.webhook_secret if emulator else "")
        self.daemon.webhook_secrets = [secret]
        self.engine = self.daemon.engine
        self.client, _ = build_client(self.settings)
        self.options = ApplyOptions(past_due_grace_days=self.settings.stripe.past_due_grace_days)
        self._serve()
        if emulator is not None:
            self.emu = emulator.emulator
            self.emu.config.webhook_url = f"{self.url}/webhooks/stripe"

    def _serve(self) -> None:
        from syncd.stripe_emulator.server import free_port

        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(create_app(self.daemon), host="127.0.0.1", port=port, log_level="warning")
        self._uvicorn = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._uvicorn.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._uvicorn.started:
            assert time.monotonic() < deadline, "syncd did not start"
            time.sleep(0.01)

    def close(self) -> None:
        if self.server is not None:
            self.emu.config.webhook_url = None
        self._uvicorn.should_exit = True
        self._thread.join(timeout=10)
        self.control.close()
        self.daemon.close()

    # -- Stripe side ----------------------------------------------------------------------

    def apply_catalog(self, ids: dict[str, str]) -> None:
        with session_scope(self.engine) as session:
            apply_catalog(session, loads(CATALOG.format(**ids)))

    def catalog(self) -> dict[str, str]:
        """Products and monthly prices in the emulator, and the syncd catalog linked to them."""
        v1 = self.client.v1
        ids: dict[str, str] = {}
        for key, amount in (("pro", 4900), ("enterprise", 19900), ("analytics", 1900), ("team", 9900)):
            meta = {"syncd_plan": "team"} if key == "team" else {}
            product = v1.products.create({"name": key.title(), "metadata": meta})
            price = v1.prices.create(
                {
                    "product": product.id,
                    "unit_amount": amount,
                    "currency": "usd",
                    "recurring": {"interval": "month"},
                }
            )
            ids[key], ids[f"{key}_price"] = product.id, price.id
        self.apply_catalog(ids)
        return ids

    def customer(self, pm: str = "pm_card_visa", name: str = "Acme") -> str:
        return str(
            self.client.v1.customers.create(
                {"name": name, "invoice_settings": {"default_payment_method": pm}}
            ).id
        )

    def set_payment_method(self, customer: str, pm: str) -> None:
        self.control.post(
            f"/customers/{customer}/payment_method", json={"payment_method": pm}
        ).raise_for_status()

    def faults(self, **switches: Any) -> None:
        self.control.post("/faults", json=switches).raise_for_status()

    def advance(self, days: float) -> None:
        self.control.post("/clock/advance", json={"days": days}).raise_for_status()

    @property
    def now(self) -> int:
        return self.emu.now() if self.server is not None else int(time.time())

    # -- syncd side -------------------------------------------------------------------------

    def flush(self) -> dict[str, Any]:
        response = self.control.post("/webhooks/flush")
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def apply(self) -> ApplyResult:
        return apply_pending(self.engine, self.client, options=self.options, now=ts(self.now))

    def sync(self) -> ApplyResult:
        self.flush()
        return self.apply()

    def base(self, customer: str) -> str | None:
        """The company's base plan key ("<no company>" before the company exists)."""
        with Session(self.engine) as session:
            found = session.exec(
                select(CompanyKey.company_id).where(
                    col(CompanyKey.key) == "stripe_customer_id", col(CompanyKey.value) == customer
                )
            ).first()
        return self.company(customer).base if found else "<no company>"

    def company(self, customer: str) -> Company:
        with Session(self.engine) as session:
            company_id = session.exec(
                select(CompanyKey.company_id).where(
                    col(CompanyKey.key) == "stripe_customer_id", col(CompanyKey.value) == customer
                )
            ).one()
            rows = list(
                session.exec(select(CompanyPlan).where(col(CompanyPlan.company_id) == company_id)).all()
            )
            keys = {p.id: p.key for p in session.exec(select(Plan)).all()}
            traits = {
                d.name: t.value
                for t, d in session.exec(
                    select(CompanyTrait, TraitDefinition)
                    .join(TraitDefinition, col(TraitDefinition.id) == CompanyTrait.trait_definition_id)
                    .where(col(CompanyTrait.company_id) == company_id)
                ).all()
            }
        base = next((keys[r.plan_id] for r in rows if r.role == "base"), None)
        return Company(
            company_id, base, sorted(keys[r.plan_id] for r in rows if r.role == "add_on"), rows, traits
        )

    def flag(self, customer: str, key: str) -> bool:
        """The flag check the runtime API would answer now (Stripe's clock), from a fresh store."""
        store = EntitlementStore(self.engine, clock=lambda: ts(self.now) or utcnow())
        store.load()
        return store.check({"stripe_customer_id": customer}, None, key).value

    def inbox(self) -> list[InboxEvent]:
        with Session(self.engine) as session:
            return list(session.exec(select(InboxEvent)).all())

    def change_log(self, topic: str | None = None) -> list[ChangeLog]:
        with Session(self.engine) as session:
            query = select(ChangeLog).order_by(col(ChangeLog.id))
            if topic is not None:
                query = query.where(col(ChangeLog.topic) == topic)
            return list(session.exec(query).all())
