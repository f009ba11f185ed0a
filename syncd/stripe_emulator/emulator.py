"""The emulator's state and its composition root.

:class:`Emulator` owns the clock, the object store, the event log, the idempotency
cache, the fault switches and the webhook dispatcher. All state changes happen while
holding :attr:`Emulator.lock` (a re-entrant lock), so concurrent HTTP requests, clock
advances and Python callers see consistent state. Webhook sending happens outside
the lock.
"""

from __future__ import annotations

import copy
import dataclasses
import threading
from dataclasses import dataclass

import httpx

from . import lifecycle
from .clock import Clock
from .config import EmulatorConfig
from .events import EventLog, diff_previous, event_object, type_matcher
from .faults import FaultConfig, FaultInjector
from .idempotency import IdempotencyCache
from .ids import IdGenerator
from .render import render
from .store import JSON, Store
from .webhooks import Dispatcher, FlushResult, Target

__all__ = ["Emulator", "RequestInfo"]


@dataclass(frozen=True)
class RequestInfo:
    """The API request whose handling is causing events (for ``event.request``)."""

    id: str
    idempotency_key: str | None


class Emulator:
    """A stateful, in-memory Stripe."""

    def __init__(
        self, config: EmulatorConfig | None = None, *, http_client: httpx.Client | None = None
    ) -> None:
        self.config = config or EmulatorConfig()
        self._initial_config = dataclasses.replace(self.config)
        self.lock = threading.RLock()
        self.clock = Clock(self.config.start_time)
        self.ids = IdGenerator(self.config.seed)
        self._request_ids = IdGenerator()  # unseeded: GETs must not shift object ids
        self.store = Store()
        self.events = EventLog()
        self.meter_events: list[JSON] = []
        self.idempotency = IdempotencyCache()
        self.faults = FaultInjector(self.config.faults, self.config.seed)
        self.dispatcher = Dispatcher(
            self.faults,
            max_attempts=self.config.webhook_max_attempts,
            backoff=self.config.webhook_backoff,
            timeout=self.config.webhook_timeout,
            http_client=http_client,
            on_delivered=self._delivered,
        )
        self.request: RequestInfo | None = None
        self.webhook_secret = self.config.webhook_secret or self.ids.new("whsec", 32)

    # -- basics -------------------------------------------------------------------

    def now(self) -> int:
        return self.clock.now()

    def new_id(self, prefix: str, length: int = 24) -> str:
        with self.lock:
            return self.ids.new(prefix, length)

    def request_id(self) -> str:
        with self.lock:
            return self._request_ids.new("req", 14)

    def render(self, obj: JSON) -> JSON:
        return render(self, obj)

    def resolve(self, ident: str) -> JSON | None:
        """Render the object with this id (for ``expand[]``), if it exists."""
        obj = self.store.find(ident)
        return None if obj is None else self.render(obj)

    # -- events -------------------------------------------------------------------

    def targets(self, etype: str) -> list[Target]:
        out: list[Target] = []
        for endpoint in self.store.all("webhook_endpoint"):
            if endpoint["status"] != "enabled":
                continue
            if type_matcher(endpoint["enabled_events"])(etype):
                out.append(Target(endpoint["url"], endpoint["_secret"], endpoint["id"]))
        if self.config.webhook_url:
            out.append(Target(self.config.webhook_url, self.webhook_secret))
        return out

    def emit(self, etype: str, obj: JSON, before: JSON | None = None) -> JSON:
        """Record an event for ``obj`` (and queue its webhooks).

        ``before`` is the rendered object before the change; it becomes
        ``data.previous_attributes``.
        """
        with self.lock:
            snapshot = self.render(obj)
            previous = diff_previous(before, snapshot) if before is not None else None
            targets = self.targets(etype)
            request = self.request
            event = event_object(
                ident=self.ids.new("evt"),
                etype=etype,
                created=self.now(),
                obj=snapshot,
                previous=previous,
                api_version=self.config.api_version,
                request_id=request.id if request else None,
                idempotency_key=request.idempotency_key if request else None,
                pending=len(targets),
            )
            self.events.add(event)
            if targets:
                self.dispatcher.enqueue(event, targets)
            return event

    def emit_update(self, etype: str, obj: JSON, before: JSON) -> JSON | None:
        """Emit ``etype`` only if the rendered object actually changed."""
        if self.render(obj) == before:
            return None
        return self.emit(etype, obj, before)

    def _delivered(self, event_id: str) -> None:
        with self.lock:
            event = self.events.by_id.get(event_id)
            if event is not None and event["pending_webhooks"] > 0:
                event["pending_webhooks"] -= 1

    # -- time ---------------------------------------------------------------------

    def advance_to(self, ts: int) -> list[JSON]:
        """Move the clock to ``ts``, running renewals, trial ends, schedule phases,
        dunning and cancellations in order. Returns the events this created."""
        with self.lock:
            if ts < self.now():
                raise ValueError("the clock cannot move backwards")
            first = len(self.events.events)
            lifecycle.run_until(self, ts)
            return self.events.events[first:]

    def advance(self, seconds: int) -> list[JSON]:
        """Move the clock forward by ``seconds`` (relative to "now" under the lock)."""
        with self.lock:
            return self.advance_to(self.now() + int(seconds))

    # -- webhooks -----------------------------------------------------------------

    def flush_webhooks(self) -> FlushResult:
        return self.dispatcher.flush()

    def start(self) -> None:
        if self.config.auto_deliver:
            self.dispatcher.start()

    def close(self) -> None:
        self.dispatcher.close()

    # -- reset --------------------------------------------------------------------

    def reset(self, start_time: int | None = None) -> None:
        """Forget every object, event, key, delivery and fault; restore the settings."""
        with self.lock:
            for f in dataclasses.fields(self.config):
                setattr(self.config, f.name, copy.copy(getattr(self._initial_config, f.name)))
            self.dispatcher.max_attempts = self.config.webhook_max_attempts
            self.store.clear()
            self.events.clear()
            self.meter_events.clear()
            self.idempotency.clear()
            self.dispatcher.clear()
            self.faults.configure(self.config.faults or FaultConfig())
            self.ids.reseed(self.config.seed)
            self.clock.reset(start_time if start_time is not None else self.config.start_time)
