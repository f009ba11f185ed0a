"""Multi-process serving (``[server] workers = N``): one supervisor, N workers on one socket.

The supervisor migrates the database and applies the catalog once, binds the listening
socket, runs the built-in Stripe emulator (offline mode) and starts N worker processes
(forked from a clean forkserver). Each worker builds its own :class:`~syncd.daemon.Daemon`
(engine, pools, entitlement store) after the fork and serves the inherited socket with uvicorn; the
kernel hands each new connection to one of them. Workers share nothing in memory: each
store follows the change log, so a write through one worker reaches the others within a
follow tick. Only worker 0 runs the scheduler, so jobs run once.

SIGTERM/SIGINT to the supervisor is forwarded to every worker, which drains in-flight
requests and exits; the supervisor exits 0 when all of them did. A worker that dies while
the supervisor is not stopping is restarted, with a growing delay if it keeps dying.
"""

from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing
import signal
import socket
import time
from collections.abc import Callable
from multiprocessing.connection import wait
from multiprocessing.context import ForkServerProcess
from types import FrameType
from typing import TYPE_CHECKING

import structlog
from pydantic import SecretStr

from .config import CatalogSettings, Settings

if TYPE_CHECKING:
    from .daemon import Daemon

log = structlog.get_logger(__name__)

RESTART_DELAY_MAX_S = 30.0
HEALTHY_AFTER_S = 30.0  # a worker that lived this long resets its restart delay


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must be IPPROTO_TCP (not 0): asyncio sets TCP_NODELAY on accepted connections only
    # then, and without it Nagle + delayed ACKs add ~40 ms to every keep-alive response.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    # Listen now: connections made while workers start wait in the backlog instead of failing.
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def worker_main(settings: Settings, sock: socket.socket, index: int, host: str, port: int) -> None:
    """Entry point of a worker process."""
    import sys

    from .daemon import Daemon
    from .log import configure_logging

    # Until the daemon installs its own handlers, a stop request means: exit cleanly.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
    configure_logging(settings.log.level, settings.log.format)
    structlog.contextvars.bind_contextvars(worker=index)
    daemon = Daemon(settings)
    daemon.prepare(migrate_db=False, instance_lock=False)  # the supervisor holds the SQLite lock
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        runner.run(daemon.serve(host, port, sock=sock))  # host/port: only logged


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when installed (the ``fast`` extra), else asyncio's default."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


@dataclasses.dataclass
class _Slot:
    index: int
    process: ForkServerProcess | None = None
    started_at: float = 0.0
    delay_s: float = 0.0
    restart_at: float = 0.0


class Supervisor:
    def __init__(self, settings: Settings, host: str, port: int) -> None:
        self.settings, self.host, self.port = settings, host, port
        self.count = settings.server.workers
        # forkserver: a clean helper process (no threads, unlike this one with the emulator)
        # imports syncd once, then forks each worker, so a restart costs no re-import.
        self._ctx = multiprocessing.get_context("forkserver")
        self._ctx.set_forkserver_preload(["syncd.daemon"])
        self._stopping = False
        self._slots = [_Slot(i) for i in range(self.count)]

    def run(self) -> int:
        from .daemon import Daemon

        # Migrate and apply the catalog once, here, before any worker reads the database.
        daemon = Daemon(self.settings)
        daemon.prepare(load_state=False)
        sock = bind_socket(self.host, self.port)
        try:
            if self.settings.uses_stripe_emulator:
                daemon.start_emulator(f"http://{self.host}:{self.port}/webhooks/stripe")
            daemon.engine.dispose()  # workers open their own pools
            worker_settings = self._worker_settings(daemon)
            previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
            try:
                log.info("supervisor_started", workers=self.count, host=self.host, port=self.port)
                return self._supervise(worker_settings, sock)
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
        finally:
            sock.close()
            daemon.close()
            log.info("supervisor_stopped")

    def _worker_settings(self, daemon: Daemon) -> list[Settings]:
        """Settings for each worker: the catalog is applied already; Stripe is the emulator the
        supervisor runs (if any); only worker 0 runs the scheduler."""
        base = dataclasses.replace(self.settings, catalog=CatalogSettings(path=None))
        if daemon.emulator is not None:
            stripe = dataclasses.replace(
                base.stripe,
                api_key=SecretStr(daemon.stripe_api_key or ""),
                api_base=daemon.stripe_api_base,
                webhook_secret=SecretStr(",".join(daemon.webhook_secrets)),
            )
            base = dataclasses.replace(base, stripe=stripe)
        quiet = dataclasses.replace(base.scheduler, enabled=False)
        return [base if i == 0 else dataclasses.replace(base, scheduler=quiet) for i in range(self.count)]

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if not self._stopping:
            log.info("supervisor_stopping", signal=signal.Signals(signum).name)
        self._stopping = True

    def _start(self, slot: _Slot, settings: Settings, sock: socket.socket) -> None:
        process = self._ctx.Process(
            target=worker_main,
            args=(settings, sock, slot.index, self.host, self.port),
            name=f"syncd-worker-{slot.index}",
        )
        process.start()
        slot.process, slot.started_at = process, time.monotonic()
        log.info("worker_started", worker=slot.index, pid=process.pid)

    def _supervise(self, settings: list[Settings], sock: socket.socket) -> int:
        for slot in self._slots:
            self._start(slot, settings[slot.index], sock)
        while not self._stopping:
            sentinels = [s.process.sentinel for s in self._slots if s.process is not None]
            wait(sentinels, timeout=0.5)
            now = time.monotonic()
            for slot in self._slots:
                if self._stopping:
                    break
                if slot.process is not None and not slot.process.is_alive():
                    self._on_exit(slot, now)
                if slot.process is None and now >= slot.restart_at:
                    self._start(slot, settings[slot.index], sock)
        return self._drain()

    def _on_exit(self, slot: _Slot, now: float) -> None:
        assert slot.process is not None
        lived = now - slot.started_at
        slot.delay_s = (
            0.0 if lived >= HEALTHY_AFTER_S else min(max(slot.delay_s * 2, 0.5), RESTART_DELAY_MAX_S)
        )
        slot.restart_at = now + slot.delay_s
        log.warning(
            "worker_exited",
            worker=slot.index,
            pid=slot.process.pid,
            exitcode=slot.process.exitcode,
            restart_in_s=slot.delay_s,
        )
        slot.process.close()
        slot.process = None

    def _drain(self) -> int:
        """Forward SIGTERM, wait for every worker to drain; 0 when all exited cleanly."""
        running = [s.process for s in self._slots if s.process is not None and s.process.is_alive()]
        for process in running:
            process.terminate()  # SIGTERM: the worker's daemon drains in-flight requests
        deadline = time.monotonic() + self.settings.server.shutdown_grace_s + 10
        clean = True
        for process in running:
            process.join(timeout=max(deadline - time.monotonic(), 0.1))
            if process.is_alive():
                log.error("worker_did_not_stop", pid=process.pid)
                process.kill()
                process.join()
                clean = False
            elif process.exitcode != 0:
                log.error("worker_failed", pid=process.pid, exitcode=process.exitcode)
                clean = False
        return 0 if clean else 1


def serve_workers(settings: Settings, host: str | None, port: int | None) -> int:
    return Supervisor(settings, host or settings.server.host, port or settings.server.port).run()
