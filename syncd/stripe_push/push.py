"""``syncd catalog push [--dry-run]``: catalog ops then subscription swaps, as one run."""

from __future__ import annotations

import stripe
from sqlalchemy.engine import Engine
from sqlmodel import Session

from .catalog import PushResult, plan_catalog, run_ops
from .subscriptions import plan_swaps

SUBSCRIPTION_ACTIONS = ("swap", "close")  # planned again once the catalog ops ran


def plan_all(
    engine: Engine, client: stripe.StripeClient, proration_behavior: str | None = None
) -> PushResult:
    with Session(engine) as session:
        ops = plan_catalog(session, client)
        ops += plan_swaps(session, proration_behavior)
    return PushResult(ops)


def push(
    engine: Engine,
    client: stripe.StripeClient,
    *,
    dry_run: bool = False,
    proration_behavior: str | None = None,
) -> PushResult:
    """Plan, and unless ``dry_run`` apply. Swaps need the prices the catalog ops create, so
    they are planned again after the catalog ops ran."""
    result = plan_all(engine, client, proration_behavior)
    result.dry_run = dry_run
    if dry_run or not result.ops:
        return result
    catalog_ops = [op for op in result.ops if op.action not in SUBSCRIPTION_ACTIONS]
    result.applied = run_ops(engine, client, catalog_ops)
    with Session(engine) as session:
        swaps = plan_swaps(session, proration_behavior)
    result.applied += run_ops(engine, client, swaps)
    result.ops = catalog_ops + swaps
    return result
