"""Push divergence for ``syncd reconcile --verify | --repair``.

Catalog operations are checked when syncd owns Stripe's catalog: ``[stripe] push_catalog``
is on, or a product carries ``metadata.syncd_origin`` (a ``syncd catalog push`` ran). Every
operation a push would perform is then a difference (a local price without its Stripe price,
an amount mismatch, a still-active price of an archived version, ...). Migrated
subscriptions still on an old version's price are always checked. Repair is the push itself.
"""

from __future__ import annotations

import stripe
from sqlalchemy.engine import Engine
from sqlmodel import Session

from ..stripe_api import METADATA_ORIGIN_KEY
from .catalog import Op, PushResult, run_ops
from .push import plan_all, push
from .subscriptions import plan_swaps


def owns_catalog(client: stripe.StripeClient) -> bool:
    return any(
        (p.to_dict().get("metadata") or {}).get(METADATA_ORIGIN_KEY)
        for p in client.v1.products.list({"limit": 100}).auto_paging_iter()
    )


def _planned(engine: Engine, client: stripe.StripeClient, owned: bool) -> list[Op]:
    if owned:
        return plan_all(engine, client).ops
    with Session(engine) as session:
        return plan_swaps(session)


def catalog_divergence(engine: Engine, client: stripe.StripeClient, *, force: bool = False) -> list[str]:
    """Lines describing what differs (empty when in sync)."""
    ops = _planned(engine, client, force or owns_catalog(client))
    return [f"catalog push: {op.line}" for op in ops if op.action != "close"]  # close: bookkeeping


def repair_catalog(engine: Engine, client: stripe.StripeClient, *, force: bool = False) -> PushResult:
    if force or owns_catalog(client):
        return push(engine, client)
    ops = _planned(engine, client, False)
    return PushResult(ops, applied=run_ops(engine, client, ops))
