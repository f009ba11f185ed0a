"""``syncd reconcile [--verify | --repair]`` and ``syncd backfill``, with rich progress bars.

Without a Stripe key (emulator mode) the commands talk to the emulator of a running
``syncd run`` on ``[stripe] emulator_port``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import stripe
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from sqlalchemy.engine import Engine

from ..config import Settings
from ..stripe_api import build_client
from ..stripe_push.verify import catalog_divergence, repair_catalog
from .apply import apply_pending
from .reconcile import repair as repair_state
from .reconcile import verify
from .replay import replay_events
from .runtime import apply_options
from .sweep import sweep

_err = Console(stderr=True, highlight=False, soft_wrap=True)


def stripe_client(settings: Settings) -> stripe.StripeClient:
    if settings.stripe.api_key is not None:
        client, _ = build_client(settings)
    else:
        base = settings.stripe.api_base or f"http://127.0.0.1:{settings.stripe.emulator_port}"
        client, _ = build_client(settings, api_key="sk_test_emulator", api_base=base)
    return client


@contextmanager
def progress_bars() -> Iterator[Callable[[str, int], None]]:
    """A callback advancing one bar per object kind (on stderr, so stdout stays the report)."""
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description:<22}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=_err, transient=not _err.is_terminal) as progress:
        tasks: dict[str, int] = {}

        def advance(kind: str, n: int) -> None:
            if kind not in tasks:
                tasks[kind] = int(progress.add_task(kind, total=None))
            progress.advance(tasks[kind], n)  # type: ignore[arg-type]

        yield advance


def reconcile(settings: Settings, engine: Engine, *, verify_only: bool, repair: bool) -> int:
    client = stripe_client(settings)
    grace = settings.stripe.past_due_grace_days
    if not verify_only and not repair:
        # The nightly job by hand: replay missed events, sweep everything, apply.
        replay_events(engine, client, overlap_s=settings.stripe.events_overlap_s)
        with progress_bars() as advance:
            result = sweep(
                engine,
                client,
                workers=settings.stripe.sweep_workers,
                page_size=settings.stripe.sweep_page(),
                past_due_grace_days=grace,
                on_progress=advance,
            )
        applied = apply_pending(engine, client, options=apply_options(settings))
        print(f"swept {result.total} object(s); applied {applied.processed} pending event(s)")
        return 0
    with progress_bars() as advance:
        report = verify(engine, client, past_due_grace_days=grace, on_progress=advance)
    # syncd -> Stripe: what a catalog push would still write (only where syncd owns the catalog).
    pushed = catalog_divergence(engine, client, force=settings.stripe.push_catalog)
    checked = ", ".join(f"{n} {kind}(s)" for kind, n in report.checked.items())
    if verify_only:
        for line in report.lines + pushed:
            print(line)
        print(f"checked {checked}: {len(report.lines) + len(pushed)} difference(s)")
        return 0 if report.clean and not pushed else 1
    if pushed:
        catalog_push = repair_catalog(engine, client, force=settings.stripe.push_catalog)
        print(f"pushed {catalog_push.applied} change(s) to Stripe")
    with progress_bars() as advance:
        fixed = repair_state(engine, client, report, past_due_grace_days=grace, on_progress=advance)
    print(f"repaired {len(report.lines)} difference(s); re-mapped {fixed} customer(s)")
    return 0


def backfill(settings: Settings, engine: Engine, *, resume: bool) -> int:
    client = stripe_client(settings)
    with progress_bars() as advance:
        result = sweep(
            engine,
            client,
            resume=resume,
            workers=settings.stripe.sweep_workers,
            page_size=settings.stripe.sweep_page(),
            past_due_grace_days=settings.stripe.past_due_grace_days,
            on_progress=advance,
        )
    resumed = f" (resumed {', '.join(result.resumed)})" if result.resumed else ""
    print(
        f"swept {result.total} object(s){resumed}: "
        + ", ".join(f"{k}={v}" for k, v in result.objects.items())
    )
    sys.stdout.flush()
    return 0
