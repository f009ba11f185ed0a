"""CLI glue for ``syncd catalog push`` and ``syncd usage flush``."""

from __future__ import annotations

import sys

import stripe
from sqlalchemy.engine import Engine

from ..config import Settings
from .push import push


def catalog_push(
    settings: Settings, engine: Engine, *, dry_run: bool, proration_behavior: str | None = None
) -> int:
    from ..stripe_sync.cli import stripe_client

    client = stripe_client(settings)
    try:
        result = push(engine, client, dry_run=dry_run, proration_behavior=proration_behavior)
    except stripe.StripeError as exc:
        print(f"error: Stripe refused the push: {exc.user_message or exc}", file=sys.stderr)
        print("the objects pushed before the error are linked; run the push again to resume", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for line in result.lines:
        print(line)
    if not result.ops:
        print("Stripe catalog already up to date")
    elif dry_run:
        print(f"would write {len(result.ops)} change(s) (dry run: nothing written)")
    else:
        print(f"wrote {result.applied} change(s)")
    return 0
