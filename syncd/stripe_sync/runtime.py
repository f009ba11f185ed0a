"""The Stripe side of a running daemon: its client and apply policy, built once."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

import stripe
import structlog

from ..config import Settings
from ..pglisten import Listener
from ..stripe_api import build_client
from .apply import ApplyOptions, apply_pending

log = structlog.get_logger(__name__)

if TYPE_CHECKING:
    from ..daemon import Daemon

_lock = threading.Lock()
_clients: dict[tuple[int, str | None, str | None], stripe.StripeClient] = {}


def client_for(daemon: Daemon) -> stripe.StripeClient | None:
    """The daemon's StripeClient (real Stripe or its emulator); None without a key."""
    key, base = daemon.stripe_api_key, daemon.stripe_api_base
    if key is None:
        return None
    cache_key = (id(daemon), key, base)
    with _lock:
        client = _clients.get(cache_key)
        if client is None:
            client, _ = build_client(daemon.settings, api_key=key, api_base=base)
            _clients[cache_key] = client
        return client


EXPIRY_INTERVAL_S = 1.0
_apply_locks: dict[int, threading.Lock] = {}


def apply_lock(daemon: Daemon) -> threading.Lock:
    """One applier per daemon at a time. The kicked worker and the scheduled job would
    otherwise take the same oldest batch and contend for its customers' locks (waits, and
    deadlocks that cost a second each to detect); replicas still may, and are handled there."""
    with _lock:
        return _apply_locks.setdefault(id(daemon), threading.Lock())


class InboxWorker:
    """One applier thread per daemon, woken by each stored webhook.

    Bursts coalesce into batches (one transaction per batch on Postgres), and a single
    in-process applier never races itself; the scheduled job covers anything it misses."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self._wake = threading.Event()
        self._last_expiry = float("-inf")
        self._thread = threading.Thread(target=self._run, name="stripe-inbox", daemon=True)
        self._thread.start()

    def kick(self) -> None:
        self._wake.set()

    def _apply_once(self) -> int:
        """One pass; access expiry (a scan of billing plan rows, second resolution) at most
        once a second rather than as a fixed cost of every small batch."""
        now = time.monotonic()
        expire = now - self._last_expiry >= EXPIRY_INTERVAL_S
        if expire:
            self._last_expiry = now
        return apply_pending(
            self.daemon.engine,
            client_for(self.daemon),
            options=apply_options(self.daemon.settings),
            limit=500,
            expire=expire,
        ).processed

    def _run(self) -> None:
        from .. import jobs

        while True:
            woke = self._wake.wait(timeout=1.0)
            if jobs._current is not self.daemon:
                break  # the daemon stopped serving
            if not woke:
                continue
            self._wake.clear()
            try:
                with apply_lock(self.daemon):
                    while self._apply_once():
                        pass
            except Exception:  # keep the thread alive; the scheduled job retries
                log.exception("stripe_inbox_worker_failed")
        with _lock:
            _workers.pop(id(self.daemon), None)


_workers: dict[int, InboxWorker] = {}


def kick(daemon: Daemon) -> None:
    """Wake the daemon's inbox applier (started on first use)."""
    with _lock:
        worker = _workers.get(id(daemon))
        if worker is None:
            worker = _workers[id(daemon)] = InboxWorker(daemon)
    worker.kick()


# -- Applying in another process ----------------------------------------------------------------
# On Postgres the applier may run elsewhere: in a child process of the serving daemon
# (``[stripe] applier = "process"``, the default there for `syncd run`, see
# ``applier_process``), or, with several workers and the applier in a thread, in worker 0 (only
# it runs the scheduler). Each intake commit then sends a NOTIFY, and the applier LISTENs.

INBOX_CHANNEL = "syncd_inbox"  # spelled out in each LISTEN/NOTIFY statement (static SQL)


def applies_elsewhere(daemon: Daemon) -> bool:
    """True when this process's deliveries are applied by another process (Postgres): the
    daemon's applier child, or worker 0 when this worker has no scheduler."""
    if daemon.engine.dialect.name != "postgresql":
        return False
    settings = daemon.settings
    return daemon.applier is not None or (settings.server.workers > 1 and not settings.scheduler.enabled)


_listeners: dict[int, Listener] = {}


def ensure_listening(daemon: Daemon) -> None:
    """In the applying worker of several (applier in a thread), on Postgres: kick the applier
    on each NOTIFY from the other workers (a thread with its own connection, until the daemon
    stops serving)."""
    from .. import jobs

    settings = daemon.settings
    if settings.server.workers <= 1 or daemon.engine.dialect.name != "postgresql" or daemon.applier:
        return
    with _lock:
        if id(daemon) in _listeners and _listeners[id(daemon)].running:
            return
        _listeners[id(daemon)] = Listener(
            daemon.engine,
            "LISTEN syncd_inbox",  # INBOX_CHANNEL
            lambda: kick(daemon),
            name="stripe-inbox-listen",
            keep_going=lambda: jobs._current is daemon,
        ).start()


def apply_options(settings: Settings) -> ApplyOptions:
    kinds = frozenset(k.strip() for k in settings.stripe.refetch.split(",") if k.strip())
    return ApplyOptions(refetch=kinds, past_due_grace_days=settings.stripe.past_due_grace_days)
