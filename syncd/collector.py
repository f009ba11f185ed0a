"""Fewer garbage-collector runs while bulk work holds many short-lived JSON objects.

A listed page of 1,000 Stripe subscriptions is ~50,000 dicts and lists, and reference
counting frees all of them when the page is done: they never form cycles. CPython's cyclic
collector does not know that. At its default first threshold (700 more containers allocated
than freed) it runs ~70 times a page, and each time it finds the page's objects alive it moves
them to an older generation, whose collections traverse them again. In a backfill of
Stripe-shaped objects that was about a fifth of the process's CPU
(``bench/bench_stripe_sync.py --only s``).

:func:`fewer_collections` raises the first threshold for as long as any bulk job is inside it
(a count shared by threads: the last one out restores the settings it found). Cyclic garbage
is still collected, once :data:`BULK_THRESHOLD` more containers have been allocated than freed
rather than 700. The threshold is the process's, so a process that serves requests keeps the
default (:func:`keep_default`, called by ``Daemon.serve``): a young collection over 50,000
objects would be a pause of a millisecond or so in the middle of a request. There a nightly
reconcile runs at the default; ``syncd backfill`` and ``syncd reconcile`` run in processes of
their own.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

BULK_THRESHOLD = 50_000

_lock = threading.Lock()
_users = 0
_saved: tuple[int, int, int] | None = None
_serving = False


def keep_default() -> None:
    """This process serves requests: :func:`fewer_collections` leaves the collector alone."""
    global _serving
    _serving = True


@contextmanager
def fewer_collections() -> Iterator[None]:
    """The collector's first threshold at :data:`BULK_THRESHOLD` inside the block (nests and
    overlaps across threads; nothing changes in a serving process)."""
    global _users, _saved
    with _lock:
        if _users == 0 and not _serving:
            _saved = gc.get_threshold()
            first, *older = _saved
            gc.set_threshold(max(first, BULK_THRESHOLD), *older)
        _users += 1
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0 and _saved is not None:
                gc.set_threshold(*_saved)
                _saved = None
