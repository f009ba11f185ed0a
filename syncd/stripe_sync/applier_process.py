"""The Stripe inbox applier in a process of its own (``[stripe] applier = "process"``).

In the serving process the applier shares one interpreter lock with the HTTP server: a batch
being mapped (pure Python, ~10 ms) delays the next webhook's read, verification and commit,
and the intake's work delays the batch. In its own process each runs on its own core, which
is what keeps receipt -> applied short under load (``bench/bench_stripe_sync.py``).

How it is woken: Postgres only. The intake's group commit sends ``NOTIFY syncd_inbox`` inside
its own transaction (delivered at commit, no extra round trip); the applier process LISTENs on
a connection of its own and runs passes until the inbox is empty. Without a notification it
still runs a pass every second (missed notifications, events stored by the Events API replay),
and it expires ended access at most once a second, as the in-process applier does.

Lifecycle: started by the serving daemon that runs the scheduler (worker 0 of several), stopped
with it (SIGTERM, then SIGKILL after a grace period). A child that dies is restarted with a
growing delay; one whose parent died exits on its own; while none is running, the daemon's
scheduled inbox job applies in-process, as with a thread. Events are claimed inside the
applying transaction, so a child killed mid-batch leaves that batch pending for the next pass.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from multiprocessing.context import SpawnProcess
from typing import TYPE_CHECKING, Any

import structlog

from ..config import Settings

if TYPE_CHECKING:
    from ..daemon import Daemon

log = structlog.get_logger(__name__)

PASS_INTERVAL_S = 1.0  # a pass without a notification, and access expiry, at most this often
STOP_GRACE_S = 10.0
RESTART_DELAY_MIN_S = 0.5
RESTART_DELAY_MAX_S = 30.0
HEALTHY_AFTER_S = 30.0  # a child that lived this long resets the restart delay


def uses_process(settings: Settings) -> bool:
    """Whether the applier runs in a child process: ``process``, or ``auto`` on Postgres."""
    mode = settings.stripe.applier
    postgres = settings.database_url.startswith("postgresql")
    return postgres and mode in ("process", "auto")


class ApplierProcess:
    """Starts, watches and stops the applier child of a serving daemon."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._ctx = multiprocessing.get_context("spawn")  # a clean interpreter: no inherited threads
        self._process: SpawnProcess | None = None
        self._stopping = threading.Event()
        self._watchdog: threading.Thread | None = None
        self._ready = self._ctx.Event()  # set by the child once it listens
        self._started_at = 0.0

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        self._spawn()
        self._watchdog = threading.Thread(target=self._watch, name="stripe-applier-watch", daemon=True)
        self._watchdog.start()

    @property
    def alive(self) -> bool:
        """Whether a child is running and listening (False while it is being restarted)."""
        process = self._process
        return process is not None and process.is_alive() and self._ready.is_set()

    def stopping(self) -> None:
        """The daemon is shutting down: a child that exits now is not restarted."""
        self._stopping.set()

    def wait_ready(self, timeout: float) -> bool:
        """Wait until the child listens (it then applies whatever is pending)."""
        return self._ready.wait(timeout)

    def _spawn(self) -> None:
        self._ready.clear()
        process = self._ctx.Process(
            target=applier_main,
            args=(self._settings, os.getpid(), self._ready),
            name="syncd-applier",
            daemon=True,
        )
        process.start()
        self._process = process
        self._started_at = time.monotonic()
        log.info("stripe_applier_started", pid=process.pid)

    def _watch(self) -> None:
        delay = RESTART_DELAY_MIN_S
        while not self._stopping.wait(0.5):
            process = self._process
            if process is None or process.is_alive():
                continue
            lived = time.monotonic() - self._started_at
            delay = restart_delay(delay, lived)
            log.warning(
                "stripe_applier_died", exitcode=process.exitcode, lived_s=round(lived, 1), restart_in_s=delay
            )
            if self._stopping.wait(delay):
                return
            self._spawn()

    def stop(self) -> None:
        self._stopping.set()
        if self._watchdog is not None:
            self._watchdog.join(timeout=5)
        process, self._process = self._process, None
        if process is None or not process.is_alive():
            return
        process.terminate()  # SIGTERM: the child finishes its pass and exits
        process.join(STOP_GRACE_S)
        if process.is_alive():
            process.kill()
            process.join(5)
        log.info("stripe_applier_stopped", exitcode=process.exitcode)


def restart_delay(previous: float, lived: float) -> float:
    """How long to wait before restarting a child that died after ``lived`` seconds: a child
    that lived a while starts the back-off over; one that keeps dying (e.g. the database is
    down at its start) waits twice as long each time, up to a limit."""
    if lived > HEALTHY_AFTER_S:
        return RESTART_DELAY_MIN_S
    return min(RESTART_DELAY_MAX_S, previous * 2)


def applier_main(settings: Settings, parent_pid: int, ready: Any = None) -> None:
    """Entry point of the child: LISTEN, and apply passes until told to stop."""
    from ..daemon import Daemon
    from ..log import configure_logging

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C goes to the parent, which stops us
    configure_logging(settings.log.level, settings.log.format)
    structlog.contextvars.bind_contextvars(process="stripe-applier")
    daemon = Daemon(settings)
    daemon.prepare(migrate_db=False, load_state=False, instance_lock=False)
    try:
        run_applier(daemon, stop, parent_pid, ready)
    finally:
        daemon.close()


def run_applier(
    daemon: Daemon, stop: threading.Event, parent_pid: int | None = None, ready: Any = None
) -> None:
    """The child's loop (also runnable in a thread, for tests): a pass on each notification
    and at least every second, until ``stop`` is set or the parent is gone."""
    import psycopg

    from .apply import apply_pending
    from .runtime import apply_options, client_for

    url = daemon.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    options = apply_options(daemon.settings)
    last_expiry = float("-inf")
    while not stop.is_set():
        try:
            with psycopg.connect(url, autocommit=True) as listener:
                listener.execute("LISTEN syncd_inbox")  # runtime.INBOX_CHANNEL
                if ready is not None:
                    ready.set()
                while not stop.is_set():
                    if parent_pid is not None and os.getppid() != parent_pid:
                        log.warning("stripe_applier_orphaned")
                        return
                    now = time.monotonic()
                    expire = now - last_expiry >= PASS_INTERVAL_S
                    if expire:
                        last_expiry = now
                    client = client_for(daemon)
                    # Drain: notifications that arrived during a pass are covered by the next.
                    while apply_pending(
                        daemon.engine, client, options=options, limit=500, expire=expire
                    ).processed:
                        expire = False
                        if stop.is_set():
                            return
                    if any(True for _ in listener.notifies(timeout=PASS_INTERVAL_S, stop_after=1)):
                        for _ in listener.notifies(timeout=0):  # the rest: one pass covers them all
                            pass
        except Exception:  # the database went away: retry shortly, nothing is lost (inbox)
            log.warning("stripe_applier_failed", exc_info=True)
            stop.wait(1.0)
