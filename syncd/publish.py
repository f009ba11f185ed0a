"""The publish pump: every adapter follows ``change_log`` with a durable cursor of its own.

For each plugin implementing ``syncd_publish`` a ``SyncCursor`` row ``adapter:<name>``
holds the last ``change_log`` id it has published. A run reads the rows after the cursor
(at most ``batch_size``), calls that plugin's hook alone and moves the cursor only after
it returns. When the hook raises, the failure is logged and counted, the adapter backs off
(exponential, with jitter) and gets the same batch again later; the other adapters are
separate scheduler jobs with separate cursors, so they carry on. A new adapter's cursor
starts at the current end of the log: its start-up resync covers everything before.

Delivery is at least once: a crash between the hook returning and the cursor commit
replays the batch, so adapters write idempotently (keys are ids, payloads full state).

Runs are prompt, not polled: each adapter has a thread woken by every commit that wrote
change-log rows (on Postgres the insert's ``NOTIFY syncd_changes``, which reaches this process
whichever process or replica committed; on SQLite the daemon's own committing sessions), so a
change reaches Redis milliseconds after its commit. Runs of one adapter are at least
``[scheduler] publish_min_gap_s`` apart, so a stream of small commits batches up instead of
costing a run each. The scheduler's interval job (``publish_interval_s``) stays as the
safety net for a lost notification and for the end of a backoff.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog
from prometheus_client import Counter, Gauge
from sqlalchemy import BigInteger, Select, Table, cast, func
from sqlalchemy import select as sa_select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select
from tenacity import RetryCallState, Retrying, wait_exponential_jitter

from .exceptions import PluginError, SyncdError
from .hookspecs import Change
from .models import ChangeLog, SyncCursor, utcnow
from .pglisten import Listener
from .plugins import BUILTIN, Plugins
from .services.changes import expand, watch_commits

if TYPE_CHECKING:
    from apscheduler.schedulers.base import BaseScheduler

    from .daemon import Daemon

log = structlog.get_logger(__name__)

BATCH_SIZE = 500
_LOG: Table = ChangeLog.__table__  # type: ignore[attr-defined]
_CURSOR: Table = SyncCursor.__table__  # type: ignore[attr-defined]
STOP_TIMEOUT_S = 5.0  # stopping waits this long for runs under way (a batch's hook call)
RUN_BUDGET_S = 1.0  # one run drains batches for at most this long, then yields the worker
RETRY_MAX_S = 60.0  # default cap of an adapter's backoff after failed publishes
# Host apps read Redis directly, so they must catch up within seconds of an outage ending
# (issue #9: 5 s); a reconnect attempt every two seconds is cheap.
RETRY_MAX_DEFAULTS = {"redis": 2.0}


def cursor_name(adapter: str) -> str:
    return f"adapter:{adapter}"


@dataclass(slots=True)
class _Adapter:
    name: str
    publish: Callable[..., Any] | None
    resync: Callable[..., Any] | None
    wait: wait_exponential_jitter
    lock: threading.Lock
    needs_resync: bool = False
    failures: int = 0
    retry_at: float = 0.0  # time.monotonic() before which the adapter rests
    wake: threading.Event = field(default_factory=threading.Event)  # the runner's: run now


class PublishPump:
    def __init__(self, daemon: Daemon, plugins: Plugins, *, batch_size: int = BATCH_SIZE) -> None:
        self.daemon = daemon
        self.plugins = plugins
        self.batch_size = batch_size
        self.adapters: dict[str, _Adapter] = {}
        for name in dict.fromkeys([*plugins.publishers(), *plugins.implementers("syncd_resync")]):
            cfg = daemon.settings.plugin_config(name)
            default_cap = RETRY_MAX_DEFAULTS.get(name, RETRY_MAX_S)
            initial, cap = float(cfg.get("retry_initial_s", 0.5)), float(cfg.get("retry_max_s", default_cap))
            self.adapters[name] = _Adapter(
                name=name,
                publish=plugins.caller("syncd_publish", name) if name in plugins.publishers() else None,
                resync=plugins.caller("syncd_resync", name)
                if name in plugins.implementers("syncd_resync")
                else None,
                wait=wait_exponential_jitter(multiplier=initial, max=cap, jitter=initial),
                lock=threading.Lock(),
            )
        registry = daemon.metrics.registry
        self.lag_rows = Gauge(
            "syncd_adapter_cursor_lag", "change_log rows an adapter has not published yet", ["adapter"],
            registry=registry,
        )  # fmt: skip
        self.lag_seconds = Gauge(
            "syncd_adapter_lag_seconds", "Age of the oldest change an adapter has not published",
            ["adapter"], registry=registry,
        )  # fmt: skip
        self.published = Counter(
            "syncd_adapter_published_changes", "Changes published per adapter", ["adapter"], registry=registry
        )
        # Each run's read and cursor write are single statements: no transaction around them.
        self._autocommit = daemon.engine.execution_options(isolation_level="AUTOCOMMIT")
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._unwatch: Callable[[], None] | None = None
        self._listener: Listener | None = None

    # -- set-up ------------------------------------------------------------------------
    def prepare(self) -> None:
        """Create missing cursors at the end of the log and schedule a resync for every adapter."""
        with Session(self.daemon.engine) as session:
            end = session.exec(select(func.max(ChangeLog.id))).one() or 0
            for name, adapter in self.adapters.items():
                adapter.needs_resync = adapter.resync is not None
                if adapter.publish is None or session.get(SyncCursor, cursor_name(name)) is not None:
                    continue
                session.add(SyncCursor(name=cursor_name(name), value=str(end)))
                try:
                    session.commit()
                except IntegrityError:  # another replica created it first: theirs is as good
                    session.rollback()

    def install(self, scheduler: BaseScheduler, interval_s: float) -> None:
        """One scheduler job per adapter, so a slow adapter only ever delays itself."""
        from apscheduler.triggers.interval import IntervalTrigger

        from . import jobs

        for name in self.adapters:
            scheduler.add_job(
                jobs.publish_changes,
                IntervalTrigger(seconds=interval_s),
                args=[name],
                id=f"publish:{name}",
                replace_existing=True,
                misfire_grace_time=None,
                coalesce=True,
                # A run drains for up to RUN_BUDGET_S, longer than the interval; the adapter's
                # own lock makes an overlapping run return at once, instead of apscheduler
                # logging a "maximum number of running instances" warning five times a second.
                max_instances=2,
            )

    def start(self, min_gap_s: float) -> None:
        """Start each publishing adapter's prompt runner and what wakes it (see the module doc)."""
        if self._threads:
            return
        # A fresh event per start: a runner abandoned by an earlier stop keeps its own, set.
        self._stopping = threading.Event()
        for adapter in self.adapters.values():
            if adapter.publish is None or adapter.name == BUILTIN:  # it only logs: its poll will do
                continue
            thread = threading.Thread(
                target=self._prompt_runs,
                args=(adapter, min_gap_s, self._stopping),
                name=f"publish-{adapter.name}",
                daemon=True,
            )
            self._threads.append(thread)
            thread.start()
        if not self._threads:
            return
        engine = self.daemon.engine
        if engine.dialect.name == "postgresql":
            self._listener = Listener(
                engine, "LISTEN syncd_changes", self.wake, name="publish-listen"
            ).start()  # CHANGES_CHANNEL
        else:
            self._unwatch = watch_commits(engine, self.wake)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Stop the prompt runners: a run under way ends after its current batch (its hook
        call is waited for, up to ``timeout_s`` in all, the listener's stop included)."""
        deadline = time.monotonic() + timeout_s
        self._stopping.set()
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None
        if self._listener is not None:
            self._listener.stop(timeout=max(0.0, deadline - time.monotonic()))
            self._listener = None
        for adapter in self.adapters.values():
            adapter.wake.set()
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():  # a hook stuck past the deadline: leave it, say so
                log.warning("publish_runner_still_running", thread=thread.name)
        self._threads = []

    def wake(self) -> None:
        """Ask every adapter for a run now (cheap: sets events; safe from any thread)."""
        for adapter in self.adapters.values():
            adapter.wake.set()

    def _prompt_runs(self, adapter: _Adapter, min_gap_s: float, stopping: threading.Event) -> None:
        while True:
            adapter.wake.wait()
            if stopping.is_set():
                return
            adapter.wake.clear()
            started = time.monotonic()
            # Leader only, as the interval job: each change is published once per cluster.
            if self.daemon.leadership.is_leader:
                try:
                    self.run(adapter.name, wait=True)
                except Exception:  # the interval job retries; this thread must live on
                    log.exception("publish_run_failed", adapter=adapter.name)
            # The gap runs from the run's start: a run as long as the gap is followed at once.
            rest = min_gap_s - (time.monotonic() - started)
            if rest > 0 and stopping.wait(rest):
                return

    def request_resync(self, name: str | None = None) -> list[str]:
        targets = [a for a in self.adapters.values() if a.resync is not None and name in (None, a.name)]
        for adapter in targets:
            adapter.needs_resync = True
            adapter.retry_at = 0.0
            adapter.wake.set()
        return [a.name for a in targets]

    # -- running -----------------------------------------------------------------------
    def run_all(self) -> dict[str, int]:
        return {name: self.run(name) for name in self.adapters}

    def run(self, name: str, *, wait: bool = False) -> int:
        """Publish what ``name`` has not published yet; returns how many changes it took.

        A run of the adapter already under way makes this return 0 at once (``wait``: wait
        for it, then run), after waking the adapter's runner: that run may have read the
        log before the commit that prompted this call, and the runner comes back for it."""
        adapter = self.adapters[name]
        if time.monotonic() < adapter.retry_at:
            return 0
        if not adapter.lock.acquire(blocking=wait):
            adapter.wake.set()
            return 0
        try:
            # Again, now that the lock is ours: the run we waited for may have failed (a new
            # backoff), or the pump may be stopping (no resync or batch should start then).
            if time.monotonic() < adapter.retry_at or (wait and self._stopping.is_set()):
                return 0
            with structlog.contextvars.bound_contextvars(adapter=name):
                return self._run(adapter)
        finally:
            adapter.lock.release()

    def _run(self, adapter: _Adapter) -> int:
        if adapter.needs_resync and adapter.resync is not None:
            if not self._attempt(adapter, "resync", adapter.resync):
                return 0
            adapter.needs_resync = False
            log.info("adapter_resynced")
        if adapter.publish is None:
            return 0
        total, deadline = 0, time.monotonic() + RUN_BUDGET_S
        while True:
            # One autocommit statement (no BEGIN/ROLLBACK round trips): the cursor is read in
            # the same statement as the rows after it. Plain rows, not ORM objects: tracked
            # usage logs hundreds of rows a second.
            with self._autocommit.connect() as conn:
                rows = conn.execute(self._after_cursor(adapter.name)).all()
            # A usage.changed row stands for one change per company (same seq): adapters
            # see one entitlements.changed change per company, as for any other write.
            changes = [
                _change(seq, topic_, cid, created_at, payload_)
                for seq, topic, company_id, created_at, payload in rows
                for topic_, cid, payload_ in expand(topic, company_id, payload)
            ]
            if not rows:
                self._observe(adapter.name, None)
                return total
            if changes and not self._attempt(adapter, "publish", adapter.publish, changes=changes):
                self._observe(adapter.name, rows[0][0] - 1)  # nothing lies between cursor and rows
                return total
            last = rows[-1][0]
            self._save_cursor(adapter.name, last)
            self.published.labels(adapter.name).inc(len(changes))
            total += len(changes)
            if len(rows) < self.batch_size or time.monotonic() > deadline or self._stopping.is_set():
                self._observe(adapter.name, None if len(rows) < self.batch_size else last)
                if len(rows) == self.batch_size:
                    adapter.wake.set()  # the runner comes back for the rest
                return total

    def _after_cursor(self, name: str) -> Select[Any]:
        saved = (
            sa_select(cast(func.nullif(_CURSOR.c.value, ""), BigInteger))
            .where(_CURSOR.c.name == cursor_name(name))
            .scalar_subquery()
        )
        return (
            sa_select(_LOG.c.id, _LOG.c.topic, _LOG.c.company_id, _LOG.c.created_at, _LOG.c.payload)
            .where(_LOG.c.id > func.coalesce(saved, 0))
            .order_by(_LOG.c.id)
            .limit(self.batch_size)
        )

    def _attempt(self, adapter: _Adapter, what: str, hook: Callable[..., Any], **kwargs: Any) -> bool:
        try:
            hook(daemon=self.daemon, **kwargs)
        except Exception as exc:
            adapter.failures += 1
            state = RetryCallState(Retrying(), None, (), {})
            state.attempt_number = adapter.failures
            delay = adapter.wait(state)
            adapter.retry_at = time.monotonic() + delay
            self.daemon.metrics.delivery_failures.labels(adapter.name).inc()
            # The traceback once per outage, as plain text: a rich traceback with locals of a
            # network client costs seconds to render on a console.
            trace = "".join(traceback.format_exception(exc)) if adapter.failures == 1 else None
            log.warning(
                "adapter_failed",
                hook=what,
                error=f"{type(exc).__name__}: {exc}",
                failures=adapter.failures,
                retry_in_s=round(delay, 3),
                traceback=trace,
            )
            return False
        if adapter.failures:
            log.info("adapter_recovered", hook=what, after_failures=adapter.failures)
        adapter.failures = 0
        return True

    # -- cursors and lag -------------------------------------------------------------------
    def cursor(self, name: str, session: Session | None = None) -> int:
        if session is None:
            with Session(self.daemon.engine) as own:
                return self.cursor(name, own)
        row = session.get(SyncCursor, cursor_name(name))
        return int(row.value) if row is not None and row.value else 0

    def _save_cursor(self, name: str, seq: int) -> None:
        """One autocommit UPDATE that only moves the cursor forward: a publisher that
        overlapped a newer one (the previous leader, finishing its batch) cannot move it back
        (the row exists since ``prepare``; recreated if deleted)."""
        saved = func.coalesce(cast(func.nullif(_CURSOR.c.value, ""), BigInteger), 0)
        with self._autocommit.connect() as conn:
            updated = conn.execute(
                _CURSOR.update()
                .where(_CURSOR.c.name == cursor_name(name), saved < seq)
                .values(value=str(seq), updated_at=utcnow())
            ).rowcount
        if updated:
            return
        with Session(self.daemon.engine) as session:
            if session.get(SyncCursor, cursor_name(name)) is not None:
                return  # already at or past ``seq``
            session.add(SyncCursor(name=cursor_name(name), value=str(seq), updated_at=utcnow()))
            try:
                session.commit()
            except IntegrityError:  # recreated meanwhile by another publisher: theirs stands
                session.rollback()

    def _observe(self, name: str, cursor: int | None) -> None:
        """Update the lag gauges; ``cursor`` None means the adapter is caught up."""
        if cursor is None:
            self.lag_rows.labels(name).set(0)
            self.lag_seconds.labels(name).set(0)
            return
        with Session(self.daemon.engine) as session:
            count, oldest = session.exec(
                select(func.count(), func.min(ChangeLog.created_at)).where(col(ChangeLog.id) > cursor)
            ).one()
        self.lag_rows.labels(name).set(count)
        age = (utcnow() - oldest).total_seconds() if oldest is not None else 0.0
        self.lag_seconds.labels(name).set(max(age, 0.0))


def _change(
    seq: int | None,
    topic: str,
    company_id: str | None,
    created_at: dt.datetime,
    payload: Mapping[str, Any] | None,
) -> Change:
    assert seq is not None
    return Change(
        seq=seq, topic=topic, company_id=company_id, created_at=created_at, payload=dict(payload or {})
    )


def call_each(plugins: Plugins, hook: str, daemon: Daemon, names: Sequence[str] | None = None) -> None:
    """Call ``hook`` on each plugin implementing it (or those in ``names``), one at a time.

    Raises PluginError naming the plugin when one fails (the CLI prints it on one line).
    """
    for name in plugins.implementers(hook):
        if names is not None and name not in names:
            continue
        try:
            plugins.caller(hook, name)(daemon=daemon)
        except SyncdError:
            raise
        except Exception as exc:
            raise PluginError(f"{hook} failed in plugin {name!r}: {type(exc).__name__}: {exc}") from exc
