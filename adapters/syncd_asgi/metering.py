"""Usage tracking for metered routes: batched ``track`` events to syncd's ``/batch`` endpoint.

The request path only appends to a deque. A background thread (one per process, started
lazily, restarted after a fork) wakes every ``tick``: it applies the new usage to the replica
optimistically (so a limit bites before syncd's next refresh arrives) and, every
``flush_interval`` or as soon as 100 events are waiting, posts them in Schematic's capture
format, at most 100 per request, each with an idempotency key so a retried post cannot count
twice. Network errors and 5xx/429 are retried with exponential backoff; events that still fail
stay buffered (bounded) for the next round. A 4xx other than 429 means the batch itself is
wrong (bad key, bad event): it is dropped and logged, since sending it again cannot succeed.
"""

from __future__ import annotations

import atexit
import collections
import datetime as dt
import threading
import time
import uuid
import weakref
from collections.abc import Mapping
from typing import Any

import httpx
import structlog
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from syncd.engine.wire import format_ts

from .replica import Keys, Source, _pid

log = structlog.get_logger(__name__)

MAX_EVENTS_PER_REQUEST = 100


class _Retryable(Exception):
    pass


# Trackers still open at interpreter exit send what they hold (held weakly: a tracker that is
# dropped unclosed is not kept alive for this).
_live: weakref.WeakSet[UsageTracker] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for tracker in list(_live):
        tracker.close()


class UsageTracker:
    """Buffers track events and sends them to ``{syncd_url}/batch`` from a background thread."""

    def __init__(
        self,
        syncd_url: str,
        api_key: str,
        *,
        replica: Source | None = None,
        flush_interval: float = 1.0,
        tick: float = 0.02,
        max_buffer: int = 10_000,
        timeout: float = 5.0,
        attempts: int = 3,
        backoff: float = 0.2,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.batch_url = syncd_url.rstrip("/") + "/batch"
        self._api_key = api_key
        self.replica = replica
        self._flush_interval, self._tick = flush_interval, tick
        self._max_buffer, self._timeout, self._attempts = max_buffer, timeout, attempts
        self._backoff = backoff
        self._transport = transport
        self._init_process()
        self._closed = False
        #: Events accepted by the receiver / dropped (buffer overflow or refused), this process.
        self.sent = 0
        self.dropped = 0
        _live.add(self)

    def _init_process(self) -> None:
        # Everything here is per process: a forked child must neither send the parent's
        # buffered events again nor touch the parent's thread, lock or connections.
        self._pid = _pid[0]
        self._queue: collections.deque[tuple[Keys | None, Keys | None, str, int]] = collections.deque()
        self._pending: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: httpx.Client | None = None
        self._next_send = time.monotonic() + self._flush_interval

    def track(self, company: Keys | None, user: Keys | None, event: str, quantity: int = 1) -> None:
        """Record one use (cheap: an append; the thread does the rest)."""
        if self._pid != _pid[0]:
            self._init_process()
        if self._thread is None and not self._closed:
            self._thread = threading.Thread(
                target=self._run, args=(self._stop,), name="syncd-usage", daemon=True
            )
            self._thread.start()
        self._queue.append((company, user, event, quantity))

    def flush(self) -> None:
        """Apply and send everything queued so far, now (blocking; call from a thread)."""
        self._cycle(force=True)

    def close(self) -> None:
        """Stop the thread and send what is left."""
        if self._closed or self._pid != _pid[0]:
            return
        self._closed = True
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=self._timeout * self._attempts + 1)
        self._cycle(force=True)
        if self._client is not None:
            self._client.close()

    # --- background work -------------------------------------------------------------------
    def _run(self, stop: threading.Event) -> None:
        while not stop.wait(self._tick):
            try:
                self._cycle(force=False)
            except Exception:
                log.exception("usage_flush_error")

    def _cycle(self, *, force: bool) -> None:
        with self._lock:
            self._drain()
            due = time.monotonic() >= self._next_send or len(self._pending) >= MAX_EVENTS_PER_REQUEST
            if self._pending and (force or due):
                self._send_pending()
            if due:
                self._next_send = time.monotonic() + self._flush_interval

    def _drain(self) -> None:
        bumps: dict[tuple[str, str], int] = {}
        sent_at = format_ts(dt.datetime.now(dt.UTC))
        while self._queue:
            company, user, event, quantity = self._queue.popleft()
            body: dict[str, Any] = {"event": event, "quantity": quantity, "company": dict(company or {})}
            if user:
                body["user"] = dict(user)
            self._pending.append(
                {
                    "api_key": self._api_key,
                    "type": "track",
                    "body": body,
                    "idempotency_key": uuid.uuid4().hex,
                    "sent_at": sent_at,
                }
            )
            company_id = None if self.replica is None or not company else self.replica.company_id(company)
            if company_id is not None:
                bumps[company_id, event] = bumps.get((company_id, event), 0) + quantity
        if self.replica is not None:
            for (company_id, event), quantity in bumps.items():
                self.replica.bump_usage(company_id, event, quantity)
        overflow = len(self._pending) - self._max_buffer
        if overflow > 0:
            del self._pending[:overflow]
            self.dropped += overflow
            log.warning("usage_buffer_overflow", dropped=overflow)

    def _send_pending(self) -> None:
        while self._pending:
            chunk = self._pending[:MAX_EVENTS_PER_REQUEST]
            try:
                self._post(chunk)
            except (httpx.HTTPError, _Retryable) as exc:
                log.warning("usage_send_failed", events=len(chunk), error=str(exc), url=self.batch_url)
                return  # keep them for the next round
            del self._pending[: len(chunk)]

    def _post(self, events: list[dict[str, Any]]) -> None:
        if self._client is None:
            self._client = httpx.Client(timeout=self._timeout, transport=self._transport)
        client = self._client
        retrying = Retrying(
            stop=stop_after_attempt(self._attempts),
            wait=wait_exponential_jitter(
                multiplier=self._backoff, max=10 * self._backoff, jitter=self._backoff
            ),
            retry=retry_if_exception_type((httpx.TransportError, _Retryable)),
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
                response = client.post(
                    self.batch_url, json={"events": events}, headers={"X-Schematic-Api-Key": self._api_key}
                )
                if response.status_code == 429 or response.status_code >= 500:
                    raise _Retryable(f"HTTP {response.status_code}")
        if response.status_code >= 400:
            self.dropped += len(events)
            log.error(
                "usage_batch_refused", status=response.status_code, events=len(events), body=_short(response)
            )
            return
        self.sent += len(events)


def _short(response: httpx.Response) -> str | Mapping[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return response.text[:200]
    return data if isinstance(data, dict) else str(data)[:200]
