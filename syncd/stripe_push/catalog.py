"""Catalog push: plans and add-ons -> Stripe products, plan versions -> their own prices.

``plan_push`` compares the local catalog with one listing of Stripe's products and prices
and returns the operations that would make Stripe match; ``run_push`` applies them one by
one, committing each local link right after its Stripe write. State-based, so it converges:
a second run plans nothing, and a run after a crash half way picks up where it stopped
(objects created just before the crash are found by lookup key / metadata, and a retried
create replays under its idempotency key).

* Product per plan that has prices (a plan without any has nothing to bill), found by
  ``Plan.stripe_product_id``, else ``metadata.syncd_plan``; name and metadata owned by syncd.
* Price per ``PlanPrice`` of a published version, ``lookup_key``
  ``syncd:<plan>:v<version>:<interval>:<currency>``; found by ``stripe_price_id``, lookup key,
  else ``metadata.syncd_price``. Stripe amounts are immutable: a changed amount is a new
  price (taking over the lookup key) and the old one is deactivated.
* Prices of archived versions and dropped prices are deactivated (existing subscriptions on
  them keep running: grandfathering).
* Migrated subscriptions (see :mod:`.subscriptions`) are swapped to their version's price.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, cast

import stripe
import structlog
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from ..models import Plan, PlanPrice, PlanVersion
from ..services.changes import catalog_changed
from ..stripe_api import METADATA_ORIGIN_KEY, idempotency_key

log = structlog.get_logger(__name__)

ORIGIN = "syncd"
JSON = dict[str, Any]


@dataclass
class Op:
    """One write that would make Stripe match the local catalog."""

    action: str  # create | update | link | deactivate | swap
    what: str
    detail: str
    run: Callable[[stripe.StripeClient, Session], None] = field(repr=False)

    @property
    def line(self) -> str:
        return f"{self.action:<10} {self.what}" + (f": {self.detail}" if self.detail else "")


@dataclass
class PushResult:
    ops: list[Op]
    applied: int = 0
    dry_run: bool = False

    @property
    def lines(self) -> list[str]:
        return [op.line for op in self.ops]


def lookup_key(plan: Plan, version: PlanVersion, price: PlanPrice) -> str:
    return f"syncd:{plan.key}:v{version.version}:{price.interval}:{price.currency}"


def product_params(plan: Plan) -> JSON:
    params: JSON = {
        "name": plan.name,
        "metadata": {METADATA_ORIGIN_KEY: ORIGIN, "syncd_plan": plan.key, "syncd_plan_type": plan.plan_type},
    }
    if plan.description:
        params["description"] = plan.description
    return params


def price_metadata(plan: Plan, version: PlanVersion, price: PlanPrice) -> dict[str, str]:
    return {
        METADATA_ORIGIN_KEY: ORIGIN,
        "syncd_plan": plan.key,
        "syncd_plan_version": str(version.version),
        "syncd_price": price.id,
    }


def _digest(params: JSON) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]


def _listing(client: stripe.StripeClient) -> tuple[dict[str, JSON], dict[str, JSON]]:
    products = {str(p["id"]): p.to_dict() for p in client.v1.products.list({"limit": 100}).auto_paging_iter()}
    try:
        prices = {str(p["id"]): p.to_dict() for p in client.v1.prices.list({"limit": 100}).auto_paging_iter()}
    except stripe.StripeError as exc:  # a fake's 404 body is not always a JSON error
        if exc.http_status != 404:
            raise
        prices = {}  # a server without the Prices API (localstripe): creating one will fail clearly
    return products, prices


class _Planner:
    def __init__(self, session: Session, products: dict[str, JSON], prices: dict[str, JSON]) -> None:
        self.s = session
        self.products = products
        self.prices = prices
        self.by_plan_meta = {
            str(p["metadata"]["syncd_plan"]): p
            for p in products.values()
            if (p.get("metadata") or {}).get("syncd_plan")
        }
        self.by_lookup = {str(p["lookup_key"]): p for p in prices.values() if p.get("lookup_key")}
        self.by_price_meta = {
            str(p["metadata"]["syncd_price"]): p
            for p in prices.values()
            if (p.get("metadata") or {}).get("syncd_price")
        }
        self.ops: list[Op] = []
        self.claimed: set[str] = set()

    # -- products -----------------------------------------------------------------------

    def plan(self) -> list[Op]:
        versions: dict[str, list[PlanVersion]] = {}
        for v in self.s.exec(select(PlanVersion).order_by(col(PlanVersion.version))).all():
            versions.setdefault(v.plan_id, []).append(v)
        prices: dict[str, list[PlanPrice]] = {}
        for p in self.s.exec(select(PlanPrice).order_by(col(PlanPrice.interval))).all():
            prices.setdefault(p.plan_version_id, []).append(p)
            if p.stripe_price_id:
                self.claimed.add(p.stripe_price_id)
        for plan in self.s.exec(select(Plan).order_by(col(Plan.key))).all():
            plan_versions = [v for v in versions.get(plan.id, []) if v.status != "draft"]
            priced = any(prices.get(v.id) for v in plan_versions)
            if not priced and not plan.stripe_product_id:
                continue
            product = self.product(plan)
            for version in plan_versions:
                for price in prices.get(version.id, []):
                    self.price(plan, version, price, product)
        return self.ops

    def product(self, plan: Plan) -> JSON | None:
        found = self.products.get(plan.stripe_product_id or "") or self.by_plan_meta.get(plan.key)
        params = product_params(plan)
        if found is None:
            plan_id = plan.id

            def create(client: stripe.StripeClient, session: Session) -> None:
                made = client.v1.products.create(
                    cast(Any, params), {"idempotency_key": idempotency_key("product", plan_id)}
                )
                _link_plan(session, plan_id, str(made.id))

            self.ops.append(Op("create", f"product {plan.key}", f"name={plan.name!r}", create))
            return None
        product_id = str(found["id"])
        if plan.stripe_product_id != product_id:
            self.ops.append(
                Op(
                    "link",
                    f"product {plan.key}",
                    product_id,
                    _linker(_link_plan, plan.id, product_id),
                )
            )
        changed = {k: v for k, v in params.items() if k != "metadata" and found.get(k) != v}
        meta = found.get("metadata") or {}
        if any(meta.get(k) != v for k, v in params["metadata"].items()):
            changed["metadata"] = params["metadata"]
        if not found.get("active", True):
            changed["active"] = True
        if changed:
            key = idempotency_key("product-update", product_id, _digest(changed))
            self.ops.append(
                Op(
                    "update",
                    f"product {plan.key}",
                    ", ".join(sorted(changed)),
                    lambda client, session: _update_product(client, product_id, changed, key),
                )
            )
        return found

    # -- prices -------------------------------------------------------------------------

    def price(self, plan: Plan, version: PlanVersion, price: PlanPrice, product: JSON | None) -> None:
        wanted = version.status == "published" and price.active
        lk = lookup_key(plan, version, price)
        what = f"price {plan.key} v{version.version} {price.interval} {price.currency}"
        found = (
            self.prices.get(price.stripe_price_id or "")
            or self.by_lookup.get(lk)
            or self.by_price_meta.get(price.id)
            or (self._hand_made(product, price) if wanted else None)
        )
        if found is not None and (product is None or found.get("product") != product["id"]):
            found = None if wanted else found  # a price of another product is not ours to reuse
        if not wanted:
            if found is not None and found.get("active"):
                self._deactivate(
                    what,
                    str(found["id"]),
                    "version archived" if version.status == "archived" else "price dropped",
                )
            return
        if found is not None and _same_terms(found, price):
            self._keep(plan, version, price, found, what, lk)
            return
        if found is not None and found.get("active"):
            self._deactivate(what, str(found["id"]), f"amount {found.get('unit_amount')} -> {price.amount}")
        self._create(plan, version, price, what, lk, transfer=found is not None or lk in self.by_lookup)

    def _hand_made(self, product: JSON | None, price: PlanPrice) -> JSON | None:
        """An active price made outside syncd on the plan's product with the same terms and
        claimed by no local price: the existing catalog is linked rather than duplicated."""
        if product is None:
            return None
        for candidate in self.prices.values():
            if (
                candidate.get("product") == product["id"]
                and candidate.get("active")
                and str(candidate["id"]) not in self.claimed
                and not (candidate.get("metadata") or {}).get("syncd_price")
                and _same_terms(candidate, price)
            ):
                self.claimed.add(str(candidate["id"]))
                return candidate
        return None

    def _keep(
        self, plan: Plan, version: PlanVersion, price: PlanPrice, found: JSON, what: str, lk: str
    ) -> None:
        stripe_id = str(found["id"])
        if price.stripe_price_id != stripe_id:
            self.ops.append(
                Op(
                    "link",
                    what,
                    stripe_id,
                    _linker(_link_price, price.id, stripe_id),
                )
            )
        changed: JSON = {}
        if not found.get("active"):
            changed["active"] = True
        meta = price_metadata(plan, version, price)
        if any((found.get("metadata") or {}).get(k) != v for k, v in meta.items()):
            changed["metadata"] = meta
        if found.get("lookup_key") != lk:
            changed["lookup_key"], changed["transfer_lookup_key"] = lk, True
        if changed:
            key = idempotency_key("price-update", stripe_id, _digest(changed))
            self.ops.append(
                Op(
                    "update",
                    what,
                    ", ".join(sorted(k for k in changed if k != "transfer_lookup_key")),
                    lambda client, session: _update_price(client, stripe_id, changed, key),
                )
            )

    def _deactivate(self, what: str, stripe_id: str, why: str) -> None:
        key = idempotency_key("price-deactivate", stripe_id)
        self.ops.append(
            Op(
                "deactivate",
                what,
                f"{stripe_id} ({why})",
                lambda client, session: _update_price(client, stripe_id, {"active": False}, key),
            )
        )

    def _create(
        self, plan: Plan, version: PlanVersion, price: PlanPrice, what: str, lk: str, *, transfer: bool
    ) -> None:
        params: JSON = {
            "currency": price.currency,
            "unit_amount": price.amount,
            "lookup_key": lk,
            "metadata": price_metadata(plan, version, price),
            "nickname": f"{plan.name} v{version.version} ({price.interval})",
        }
        if transfer:
            params["transfer_lookup_key"] = True
        if price.interval in ("month", "year"):
            params["recurring"] = {"interval": price.interval}
        key = idempotency_key("price", price.id, price.amount, price.currency)
        plan_id, price_id = plan.id, price.id

        def create(client: stripe.StripeClient, session: Session) -> None:
            product_id = session.get(Plan, plan_id).stripe_product_id  # type: ignore[union-attr]
            if product_id is None:
                raise RuntimeError(f"plan {plan_id} has no Stripe product")
            made = client.v1.prices.create(
                cast(Any, {**params, "product": product_id}), {"idempotency_key": key}
            )
            _link_price(session, price_id, str(made.id))

        self.ops.append(Op("create", what, f"{price.amount} {price.currency}", create))


def _same_terms(found: JSON, price: PlanPrice) -> bool:
    recurring = found.get("recurring") or {}
    interval = recurring.get("interval") if recurring else "one_time"
    return (
        found.get("unit_amount") == price.amount
        and str(found.get("currency")) == price.currency
        and interval == price.interval
    )


def _linker(
    link: Callable[[Session, str, str], None], local_id: str, stripe_id: str
) -> Callable[[stripe.StripeClient, Session], None]:
    def run(client: stripe.StripeClient, session: Session) -> None:
        link(session, local_id, stripe_id)

    return run


def _link_plan(session: Session, plan_id: str, product_id: str) -> None:
    plan = session.get(Plan, plan_id)
    if plan is not None and plan.stripe_product_id != product_id:
        plan.stripe_product_id = product_id
        session.add(plan)
        catalog_changed(session)


def _link_price(session: Session, price_id: str, stripe_id: str) -> None:
    price = session.get(PlanPrice, price_id)
    if price is not None and price.stripe_price_id != stripe_id:
        price.stripe_price_id = stripe_id
        session.add(price)
        catalog_changed(session)


def _update_product(client: stripe.StripeClient, product_id: str, params: JSON, key: str) -> None:
    client.v1.products.update(product_id, params, {"idempotency_key": key})  # type: ignore[arg-type]


def _update_price(client: stripe.StripeClient, price_id: str, params: JSON, key: str) -> None:
    client.v1.prices.update(price_id, params, {"idempotency_key": key})  # type: ignore[arg-type]


def plan_catalog(session: Session, client: stripe.StripeClient) -> list[Op]:
    products, prices = _listing(client)
    return _Planner(session, products, prices).plan()


def run_ops(engine: Engine, client: stripe.StripeClient, ops: Iterable[Op]) -> int:
    """Apply ops in order, committing each op's local link at once (a crash loses nothing)."""
    done = 0
    for op in ops:
        with Session(engine) as session:
            op.run(client, session)
            session.commit()
        log.info("stripe_push_op", action=op.action, what=op.what, detail=op.detail)
        done += 1
    return done
