"""The one way syncd talks to Stripe: a pinned, paced, retry-disciplined ``StripeClient``.

Discipline, and why:

* One API version, from settings, on every request: payload shapes never drift with an
  SDK upgrade.
* Explicit ``max_network_retries``: the SDK retries connection errors, 409 and 5xx with
  the *same* idempotency key, so no outer retry layer is stacked on top of it.
* A client-side token bucket (default 20 req/s live, 10 test) keeps a backfill under
  Stripe's limits instead of discovering them through 429s.
* 429 is not retried by the SDK; here it is, after ``Retry-After`` (bounded), which is
  safe for POSTs because the retried request carries the same ``Idempotency-Key``.
* Writes carry an idempotency key derived from the local change (``idempotency_key``),
  prefixed so that webhooks caused by our own writes can be recognised.
* Every response's ``Request-Id`` is logged.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import stripe
import structlog
from stripe._http_client import RequestsClient

from .config import Settings

log = structlog.get_logger(__name__)

IDEMPOTENCY_PREFIX = "syncd-"
METADATA_ORIGIN_KEY = "syncd_origin"
_MAX_RATE_LIMIT_RETRIES = 5
_MAX_RETRY_AFTER_S = 30.0


class TokenBucket:
    """Thread-safe pacing: at most ``rate`` acquisitions per second, bursts up to ``capacity``."""

    def __init__(
        self,
        rate: float,
        capacity: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.capacity = capacity if capacity is not None else max(1.0, rate)
        self._tokens = self.capacity
        self._clock, self._sleep = clock, sleep
        self._last = clock()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Take one token, sleeping as needed; returns the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
                self._last = now
                if self._tokens >= 1 - 1e-9:  # tolerance: float refills never quite reach 1
                    self._tokens = max(0.0, self._tokens - 1)
                    return waited
                delay = (1 - self._tokens) / self.rate
            self._sleep(delay)
            waited += delay


class PacedHTTPClient(RequestsClient):
    """The SDK's requests client, paced by a token bucket and retrying 429 after Retry-After."""

    def __init__(self, bucket: TokenBucket, *, sleep: Callable[[float], None] = time.sleep, **kwargs: Any):
        super().__init__(**kwargs)
        self._bucket = bucket
        self._sleep = sleep
        self.rate_limited = 0  # observable count of 429s absorbed

    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        post_data: Any = None,
        *,
        _usage: list[str] | None = None,
    ) -> tuple[Any, int, Mapping[str, str]]:
        attempt = 0
        while True:
            self._bucket.acquire()
            content, status, response_headers = super().request(method, url, headers, post_data)
            request_id = _header(response_headers, "request-id")
            log.debug("stripe_request", method=method, url=url, status=status, stripe_request_id=request_id)
            if status != 429 or attempt >= _MAX_RATE_LIMIT_RETRIES:
                if status >= 400:
                    log.info(
                        "stripe_request_failed",
                        method=method,
                        url=url,
                        status=status,
                        stripe_request_id=request_id,
                    )
                return content, status, response_headers
            attempt += 1
            self.rate_limited += 1
            delay = _retry_after(response_headers, attempt)
            log.warning("stripe_rate_limited", url=url, retry_in_s=round(delay, 3), attempt=attempt)
            self._sleep(delay)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def _retry_after(headers: Mapping[str, str], attempt: int) -> float:
    raw = _header(headers, "retry-after")
    try:
        delay = float(raw) if raw is not None else 0.0
    except ValueError:
        delay = 0.0
    if delay <= 0:
        delay = min(8.0, 0.25 * 2**attempt)
    return min(_MAX_RETRY_AFTER_S, delay) * (1 + random.uniform(0, 0.1))


def default_rate(settings: Settings) -> float:
    if settings.stripe.requests_per_second > 0:
        return settings.stripe.requests_per_second
    key = settings.stripe.api_key.get_secret_value() if settings.stripe.api_key else ""
    return 20.0 if "_live_" in key else 10.0


def build_client(
    settings: Settings,
    *,
    api_key: str | None = None,
    api_base: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[stripe.StripeClient, PacedHTTPClient]:
    """A StripeClient configured from settings (or an explicit key/base, e.g. the emulator)."""
    key = api_key or (settings.stripe.api_key.get_secret_value() if settings.stripe.api_key else None)
    if key is None:
        raise ValueError("no Stripe API key: pass api_key (emulator) or set SYNCD_STRIPE_API_KEY")
    base = api_base or settings.stripe.api_base
    http_client = PacedHTTPClient(TokenBucket(default_rate(settings)), sleep=sleep, timeout=30)
    bases: dict[str, str] = {"api": base, "meter_events": base} if base else {}
    client = stripe.StripeClient(
        key,
        stripe_version=settings.stripe.api_version,
        max_network_retries=settings.stripe.max_network_retries,
        http_client=http_client,
        base_addresses=bases,  # type: ignore[arg-type]
    )
    return client, http_client


def idempotency_key(*parts: object) -> str:
    """A stable idempotency key for one local change, recognisable as ours."""
    return IDEMPOTENCY_PREFIX + ":".join(str(p) for p in parts)[:240]


def is_own_request(event: Mapping[str, Any]) -> bool:
    """True when a Stripe event was caused by one of syncd's own writes (echo suppression)."""
    request = event.get("request") or {}
    key = request.get("idempotency_key") if isinstance(request, Mapping) else None
    return isinstance(key, str) and key.startswith(IDEMPOTENCY_PREFIX)
