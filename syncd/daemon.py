"""The composition root: settings, database, HTTP app, scheduler, Stripe side; start and stop.

Startup order: database reachable -> migrations at head -> catalog applied -> HTTP and
scheduler started. Shutdown (SIGTERM/SIGINT): stop accepting requests, let in-flight
requests and jobs finish, then close pools.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import socket
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import structlog
import uvicorn
from pydantic import SecretStr
from sqlalchemy import func, text
from sqlmodel import Session, col, select

from . import collector, jobs, migrate
from .api import create_app
from .apikeys import KeyVerifier
from .config import CatalogSettings, Settings
from .db import check_connection, make_engine
from .engine.wire import ENGINE_VERSION_KEY
from .exceptions import StartupError
from .leadership import Leadership, lock_sqlite_database, startup_lock
from .metrics import Metrics
from .models import InboxEvent, OutboxMessage, utcnow
from .plugins import Plugins
from .publish import PublishPump, call_each
from .state import EntitlementStore
from .stripe_emulator import BackgroundServer, EmulatorConfig
from .stripe_sync.applier_process import ApplierProcess, uses_process

log = structlog.get_logger(__name__)

FOLLOW_INTERVAL_S = 0.2


class _Server(uvicorn.Server):
    """uvicorn without its own signal capture: the daemon owns SIGTERM/SIGINT, so that after a
    graceful stop it can still drain jobs and close pools and exit 0 (uvicorn would re-raise)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class Daemon:
    def __init__(self, settings: Settings, *, extra_plugins: Mapping[str, object] | None = None) -> None:
        self.settings = settings
        self.engine = make_engine(settings.database_url, pool_size=settings.database.pool_size)
        self.metrics = Metrics()
        self.keys = KeyVerifier(self.engine)
        self.initial_sync_done = False
        # The rules-engine model version: what the official SDKs in replicator mode key Redis by.
        self.cache_version = ENGINE_VERSION_KEY
        self.store = EntitlementStore(self.engine)
        self._stop_following = threading.Event()
        self._follower: threading.Thread | None = None
        self._at_head = False
        self._servers: list[uvicorn.Server] = []
        self.emulator: BackgroundServer | None = None
        # Where Stripe is: the real API (settings) or the built-in emulator (set in serve()).
        self.stripe_api_base = settings.stripe.api_base
        self.stripe_api_key = settings.stripe.api_key.get_secret_value() if settings.stripe.api_key else None
        secret = settings.stripe.webhook_secret.get_secret_value() if settings.stripe.webhook_secret else ""
        self.webhook_secrets = [s.strip() for s in secret.split(",") if s.strip()]
        # Plugins: loaded in prepare(); `extra_plugins` are registered after the entry points.
        self._extra_plugins = dict(extra_plugins or {})
        self.plugins: Plugins | None = None
        self.publisher: PublishPump | None = None
        from .scheduler import build_scheduler

        self.scheduler = build_scheduler(settings)
        self.leadership = Leadership(self.engine, settings.scheduler, on_change=self._leadership_changed)
        self._instance_lock: int | None = None
        self.loop: asyncio.AbstractEventLoop | None = None  # the scheduler's, while serving
        self.applier: ApplierProcess | None = None  # the Stripe applier's child, while serving

    # -- lifecycle -----------------------------------------------------------------
    def prepare(
        self, *, migrate_db: bool = True, load_state: bool = True, instance_lock: bool = True
    ) -> None:
        """Connect, migrate and load the catalog. Raises StartupError with an operator message.
        ``load_state=False``: no in-memory store, no plugins (a supervisor that serves nothing);
        ``instance_lock=False``: a worker whose supervisor holds the SQLite lock for it."""
        if self._instance_lock is None and instance_lock:  # SQLite: one daemon per database file
            self._instance_lock = lock_sqlite_database(self.settings.database_url)
        check_connection(self.engine)
        with startup_lock(self.engine):  # replicas starting together migrate one at a time
            if migrate_db:
                migrate.upgrade(self.engine)
            elif not migrate.is_at_head(self.engine):
                raise StartupError(
                    "the database schema is not at the latest revision; run `syncd db upgrade`"
                )
            self._apply_catalog()
        if load_state:
            self.store.load()
            self.start_plugins()
        self.initial_sync_done = True
        log.info(
            "daemon_prepared",
            database=self.engine.url.get_backend_name(),
            stripe="emulator" if self.settings.uses_stripe_emulator else "stripe",
        )

    def _apply_catalog(self) -> None:
        path = self.settings.catalog.path
        if not path:
            return
        if not Path(path).is_file():
            raise StartupError(
                f"catalog file {path!r} not found; set [catalog] path or SYNCD_CATALOG_PATH=''"
            )
        from .catalog import apply_catalog, load_catalog
        from .db import session_scope

        catalog = load_catalog(path)
        with session_scope(self.engine) as session:
            diff = apply_catalog(session, catalog)
        log.info("catalog_applied", path=path, changes=len(diff.changes))

    async def serve(
        self, host: str | None = None, port: int | None = None, sock: socket.socket | None = None
    ) -> None:
        """Run the HTTP API and the scheduler until SIGTERM/SIGINT (on ``sock`` when given: a
        listening socket shared by several worker processes, see ``syncd.workers``)."""
        from .scheduler import install_jobs

        collector.keep_default()  # request latency over a bulk job's collector savings
        server_cfg = self.settings.server
        app = create_app(self)
        config = uvicorn.Config(
            app,
            host=host or server_cfg.host,
            port=port or server_cfg.port,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=int(server_cfg.shutdown_grace_s),
        )
        server = _Server(config)
        self._servers.append(server)
        if self.settings.uses_stripe_emulator:
            self.start_emulator(f"http://{config.host}:{config.port}/webhooks/stripe")
        scheduler = self.scheduler
        self.loop = asyncio.get_running_loop()
        jobs.set_current_daemon(self)
        self.start_following()
        if self.settings.scheduler.enabled and uses_process(self.settings):
            self.start_applier()
        if self.settings.scheduler.enabled:
            install_jobs(scheduler, self.settings)
            if self.publisher is not None:
                self.publisher.install(scheduler, self.settings.scheduler.publish_interval_s)
                self.publisher.start(self.settings.scheduler.publish_min_gap_s)
            self.leadership.start()
            scheduler.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        log.info("daemon_listening", host=config.host, port=config.port)
        try:
            await server.serve(sockets=[sock] if sock is not None else None)
        finally:
            if self.publisher is not None:
                await asyncio.to_thread(self.publisher.stop)
            if scheduler.running:
                # wait=True joins the thread pool: running jobs finish before we close pools.
                await asyncio.to_thread(scheduler.shutdown, True)
            # After the jobs drained: hand leadership over without waiting out the lease.
            await asyncio.to_thread(self.leadership.stop)
            jobs.set_current_daemon(None)
            self.stop_following()
            await asyncio.to_thread(self.stop_applier)
            self.close()
            log.info("daemon_stopped")

    def start_following(self, interval_s: float = FOLLOW_INTERVAL_S) -> None:
        """Keep the in-memory engine equal to the database: changes made by other processes
        and replicas (the change log) and time boundaries (trial ends, period rollovers)."""

        def loop() -> None:
            while not self._stop_following.wait(interval_s):
                try:
                    self.store.follow()
                    self.store.refresh_expired()
                    # After a bulk load, build snapshots in chunks, still following between them.
                    while self.store.warm() and not self._stop_following.is_set():
                        self.store.follow()
                except Exception:  # keep following: the next tick retries from the same cursor
                    log.exception("store_follow_failed")

        self._stop_following.clear()
        self._follower = threading.Thread(target=loop, name="syncd-follow", daemon=True)
        self._follower.start()

    def stop_following(self) -> None:
        self._stop_following.set()
        if self._follower is not None:
            self._follower.join(timeout=5)
            self._follower = None

    def start_emulator(self, webhook_url: str) -> None:
        """Offline mode: run the built-in Stripe emulator and point the Stripe side at it."""
        port = self.settings.stripe.emulator_port or None
        self.emulator = BackgroundServer(EmulatorConfig(webhook_url=webhook_url), port=port).start()
        self.stripe_api_base = self.emulator.url
        self.stripe_api_key = "sk_test_emulator"
        self.webhook_secrets = [self.emulator.emulator.webhook_secret]
        log.info("stripe_emulator_started", url=self.emulator.url)

    def start_applier(self) -> None:
        """Apply Stripe webhooks in a child process (see ``stripe_sync.applier_process``)."""
        if self.applier is not None:
            return
        stripe = dataclasses.replace(
            self.settings.stripe,
            api_key=SecretStr(self.stripe_api_key) if self.stripe_api_key else None,
            api_base=self.stripe_api_base,
        )
        child = dataclasses.replace(
            self.settings,
            stripe=stripe,
            catalog=CatalogSettings(path=None),  # applied already, by this process
            scheduler=dataclasses.replace(self.settings.scheduler, enabled=False),
        )
        self.applier = ApplierProcess(child)
        self.applier.start()

    def stop_applier(self) -> None:
        applier, self.applier = self.applier, None
        if applier is not None:
            applier.stop()

    def request_stop(self) -> None:
        log.info("daemon_stopping")
        if self.applier is not None:  # the child may get the same signal: no restart now
            self.applier.stopping()
        for server in self._servers:
            server.should_exit = True

    def close(self) -> None:
        self.stop_plugins()
        if self.emulator is not None:
            self.emulator.stop()
            self.emulator = None
        self.engine.dispose()
        if self._instance_lock is not None:
            os.close(self._instance_lock)
            self._instance_lock = None

    # -- plugins -----------------------------------------------------------------------
    def start_plugins(self) -> None:
        """Load the plugins, call ``syncd_startup`` and set up the publish cursors.

        The adapters' start-up resync runs in their first publish run, so an unreachable
        target (Redis down) delays only that adapter, never the daemon's start.
        """
        if self.plugins is not None:
            return
        plugins = Plugins.load(self.settings, extra=self._extra_plugins)
        call_each(plugins, "syncd_startup", self)
        self.plugins = plugins
        self.publisher = PublishPump(self, plugins)
        self.publisher.prepare()

    def stop_plugins(self) -> None:
        plugins, publisher = self.plugins, self.publisher
        if publisher is not None:
            publisher.stop()
        self.plugins = self.publisher = None
        if plugins is None:
            return
        try:
            call_each(plugins, "syncd_shutdown", self)
        except Exception:  # a plugin failing to close must not keep the daemon from stopping
            log.exception("plugin_shutdown_failed")

    # -- health ----------------------------------------------------------------------
    def readiness(self) -> dict[str, Any]:
        report: dict[str, Any] = {"cache_version": self.cache_version}
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            report["database"] = "ok"
            # The schema never moves backwards under a running daemon: check until true.
            at_head = self._at_head = self._at_head or migrate.is_at_head(self.engine)
            report["migrations"] = "head" if at_head else "behind"
        except Exception as exc:  # any failure means "not ready", reported, never raised
            report["database"] = f"error: {type(exc).__name__}"
            report["migrations"] = "unknown"
            at_head = False
        report["initial_sync"] = "done" if self.initial_sync_done else "pending"
        report["role"] = self.leadership.role if self.settings.scheduler.enabled else "disabled"
        report["ready"] = report["database"] == "ok" and at_head and self.initial_sync_done
        return report

    def _leadership_changed(self, leader: bool) -> None:
        self.metrics.scheduler_leader.set(1 if leader else 0)
        if leader and self.scheduler.running:
            jobs.arm_boundaries(self, utcnow())  # the new leader catches up on boundaries at once
        publisher = self.publisher  # read once: stop_plugins may clear it meanwhile
        if leader and publisher is not None:
            publisher.wake()  # changes committed while this replica followed

    def refresh_gauges(self) -> None:
        self.metrics.scheduler_leader.set(1 if self.leadership.is_leader else 0)
        with Session(self.engine) as session:
            pending = session.exec(
                select(func.count()).select_from(InboxEvent).where(col(InboxEvent.status) == "pending")
            ).one()
            self.metrics.inbox_depth.set(pending)
            rows = session.exec(
                select(OutboxMessage.adapter, func.count())
                .where(col(OutboxMessage.status) == "pending")
                .group_by(col(OutboxMessage.adapter))
            ).all()
            for adapter, count in rows:
                self.metrics.outbox_depth.labels(adapter).set(count)
