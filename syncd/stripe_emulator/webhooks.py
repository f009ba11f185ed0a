"""Webhook delivery: Stripe signatures, a retrying queue, and fault switches.

Each recorded event is queued once per matching target (a registered webhook
endpoint, or the URL given in the emulator's configuration). Deliveries are POSTed
with ``Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "{t}.{body}")>`` —
exactly Stripe's scheme, so ``stripe.Webhook.construct_event`` verifies them. ``t`` is
real wall-clock time (receivers check it against their own clock, tolerance 300 s),
not emulator time.

A non-2xx answer (or a connection error) is retried with exponential backoff up to
``max_attempts``. Deliveries happen either on a background thread (``start()``) or
synchronously with :meth:`Dispatcher.flush`, which sends everything pending — retries
included, ignoring delays and backoff — in a deterministic order for a given seed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from .faults import FaultInjector
from .store import JSON

__all__ = ["Delivery", "Dispatcher", "Target", "sign_payload"]


def sign_payload(payload: str, secret: str, timestamp: int) -> str:
    """The ``Stripe-Signature`` header value for ``payload``."""
    signed = f"{timestamp}.{payload}".encode()
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


@dataclass(frozen=True)
class Target:
    url: str
    secret: str
    endpoint: str | None = None  # the ``we_`` id, None for the configured URL


@dataclass
class Delivery:
    seq: int
    event_id: str
    event_type: str
    payload: str
    target: Target
    due: float
    duplicate: bool = False
    attempts: int = 0


@dataclass
class FlushResult:
    attempts: int = 0
    delivered: int = 0
    failed: int = 0
    log: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> JSON:
        return {
            "attempts": self.attempts,
            "delivered": self.delivered,
            "failed": self.failed,
            "log": self.log,
        }


class Dispatcher:
    """A queue of deliveries, sent by a background thread or by :meth:`flush`."""

    def __init__(
        self,
        faults: FaultInjector,
        *,
        max_attempts: int = 4,
        backoff: float = 1.0,
        timeout: float = 5.0,
        http_client: httpx.Client | None = None,
        on_delivered: Callable[[str], None] | None = None,
    ) -> None:
        self.faults = faults
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.timeout = timeout
        self.on_delivered = on_delivered
        self._client = http_client
        self._own_client = http_client is None
        self._cond = threading.Condition()
        self._send_lock = threading.Lock()
        self._queue: list[Delivery] = []
        self._seq = 0
        self.log: list[dict[str, Any]] = []
        self._thread: threading.Thread | None = None
        self._stop = False

    # -- queueing -----------------------------------------------------------------

    def enqueue(self, event: JSON, targets: list[Target]) -> None:
        payload = json.dumps(event, indent=2)
        delay = self.faults.config.webhook_delay
        with self._cond:
            for target in targets:
                copies = 2 if self.faults.chance(self.faults.config.webhook_duplicate) else 1
                for n in range(copies):
                    self._seq += 1
                    self._queue.append(
                        Delivery(
                            seq=self._seq,
                            event_id=event["id"],
                            event_type=event["type"],
                            payload=payload,
                            target=target,
                            due=time.monotonic() + delay,
                            duplicate=n > 0,
                        )
                    )
            self._cond.notify_all()

    def pending(self) -> int:
        with self._cond:
            return len(self._queue)

    def clear(self) -> None:
        with self._send_lock, self._cond:
            self._queue.clear()
            self.log.clear()

    def _take(self, *, due_only: bool) -> Delivery | None:
        """Remove and return the next delivery (caller holds ``_cond``)."""
        now = time.monotonic()
        candidates = [d for d in self._queue if not due_only or d.due <= now]
        if not candidates:
            return None
        if self.faults.config.webhook_reorder and len(candidates) > 1:
            chosen = candidates[self.faults.pick(len(candidates))]
        else:
            chosen = min(candidates, key=lambda d: d.seq)
        self._queue.remove(chosen)
        return chosen

    # -- sending ------------------------------------------------------------------

    def _http(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(timeout=self.timeout)
        return self._client

    def _send(self, delivery: Delivery) -> dict[str, Any]:
        delivery.attempts += 1
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Stripe-Signature": sign_payload(delivery.payload, delivery.target.secret, timestamp),
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        }
        status: int | None = None
        error: str | None = None
        try:
            response = self._http().post(
                delivery.target.url, content=delivery.payload.encode(), headers=headers
            )
            status = response.status_code
            ok = 200 <= status < 300
            if not ok:
                error = f"HTTP {status}"
        except httpx.HTTPError as exc:
            ok = False
            error = f"{type(exc).__name__}: {exc}"
        if ok and delivery.attempts <= self.faults.config.webhook_fail_attempts:
            ok = False
            error = "simulated timeout (webhook_fail_attempts)"
        entry = {
            "event_id": delivery.event_id,
            "event_type": delivery.event_type,
            "url": delivery.target.url,
            "endpoint": delivery.target.endpoint,
            "attempt": delivery.attempts,
            "duplicate": delivery.duplicate,
            "status": status,
            "ok": ok,
            "error": error,
            "at": time.time(),
        }
        with self._cond:
            self.log.append(entry)
            if not ok and delivery.attempts < self.max_attempts:
                self._seq += 1
                delivery.seq = self._seq
                delivery.due = time.monotonic() + self.backoff * 2 ** (delivery.attempts - 1)
                self._queue.append(delivery)
                self._cond.notify_all()
        if ok and not delivery.duplicate and self.on_delivered is not None:
            self.on_delivered(delivery.event_id)
        return entry

    def flush(self, max_attempts_total: int = 10_000) -> FlushResult:
        """Send everything pending now (retries included) and return what happened."""
        result = FlushResult()
        with self._send_lock:
            while result.attempts < max_attempts_total:
                with self._cond:
                    delivery = self._take(due_only=False)
                if delivery is None:
                    break
                entry = self._send(delivery)
                result.attempts += 1
                result.log.append(entry)
                if entry["ok"]:
                    result.delivered += 1
                elif delivery.attempts >= self.max_attempts:
                    result.failed += 1
        return result

    # -- background delivery ------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="stripe-emulator-webhooks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        thread = self._thread
        if thread is None:
            return
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        thread.join(timeout=5)
        self._thread = None

    def close(self) -> None:
        self.stop()
        if self._own_client and self._client is not None:
            self._client.close()
            self._client = None

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stop:
                    now = time.monotonic()
                    due = [d.due for d in self._queue]
                    if due and min(due) <= now:
                        break
                    self._cond.wait(timeout=(min(due) - now) if due else None)
                if self._stop:
                    return
            with self._send_lock:
                with self._cond:
                    delivery = self._take(due_only=True)
                if delivery is not None:
                    self._send(delivery)
