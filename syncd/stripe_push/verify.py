"""Catalog push divergence for ``syncd reconcile --verify | --repair``.

Checked when syncd owns Stripe's catalog: ``[stripe] push_catalog`` is on, or a product
carries ``metadata.syncd_origin`` (a ``syncd catalog push`` ran). Every operation a push
would perform is a difference (a local price without its Stripe price, an amount mismatch,
a still-active price of an archived version, a migrated subscription on an old price, ...);
repair is the push itself.
"""

from __future__ import annotations

import stripe
from sqlalchemy.engine import Engine

from ..stripe_api import METADATA_ORIGIN_KEY
from .catalog import PushResult
from .push import plan_all, push


def owns_catalog(client: stripe.StripeClient) -> bool:
    return any(
        (p.to_dict().get("metadata") or {}).get(METADATA_ORIGIN_KEY)
        for p in client.v1.products.list({"limit": 100}).auto_paging_iter()
    )


def catalog_divergence(engine: Engine, client: stripe.StripeClient, *, force: bool = False) -> list[str]:
    """Lines describing what differs (empty when in sync or when syncd does not own it)."""
    if not force and not owns_catalog(client):
        return []
    ops = plan_all(engine, client).ops
    return [f"catalog push: {op.line}" for op in ops if op.action != "close"]  # close: bookkeeping


def repair_catalog(engine: Engine, client: stripe.StripeClient, *, force: bool = False) -> PushResult | None:
    if not force and not owns_catalog(client):
        return None
    return push(engine, client)
