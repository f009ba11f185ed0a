"""Fault injection switches for the API and for webhook delivery.

API faults (429 with ``Retry-After``, 5xx) are injected before a ``/v1`` request is
handled, either for the next ``count`` matching calls or for a random ``fraction`` of
them. Webhook faults (duplicates, reordering, delay, failed-then-retried attempts) are
read by :class:`~.webhooks.Dispatcher`. All randomness comes from one RNG seeded by
``seed``, so a run is reproducible.
"""

from __future__ import annotations

import dataclasses
import math
import random
import threading
from dataclasses import dataclass, field
from typing import Any

from .errors import StripeAPIError

__all__ = ["FaultConfig", "FaultInjector"]


@dataclass
class FaultConfig:
    """Every switch, off by default. ``POST /_emulator/faults`` takes these as JSON."""

    seed: int | None = None
    #: 429s: the next ``rate_limit_count`` calls, and/or each call with this probability.
    rate_limit_count: int = 0
    rate_limit_fraction: float = 0.0
    #: ``Retry-After`` seconds sent with each 429.
    retry_after: float = 1.0
    #: Send ``Stripe-Should-Retry: true`` with 429s (stripe-python only retries a 429
    #: when told to).
    rate_limit_should_retry: bool = False
    #: 5xx: the next ``server_error_count`` calls, and/or this fraction.
    server_error_count: int = 0
    server_error_fraction: float = 0.0
    server_error_status: int = 500
    #: Optional ``Stripe-Should-Retry`` header value for 5xx (None: no header).
    server_error_should_retry: bool | None = None
    #: Only calls whose path starts with one of these (default: all ``/v1``).
    paths: list[str] = field(default_factory=list)
    #: Only these HTTP methods (default: all).
    methods: list[str] = field(default_factory=list)
    #: Probability that a webhook delivery is sent twice.
    webhook_duplicate: float = 0.0
    #: Deliver pending webhooks in a random (seeded) order instead of event order.
    webhook_reorder: bool = False
    #: Real seconds before each delivery becomes due (background delivery only).
    webhook_delay: float = 0.0
    #: The first N attempts of every delivery are sent but counted as failed (as if
    #: the receiver timed out), so each event arrives N+1 times via retries.
    webhook_fail_attempts: int = 0

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FaultConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown fault switch(es): {', '.join(unknown)}")
        return cls(**data)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class FaultInjector:
    """Thread-safe holder of the current :class:`FaultConfig` and its counters."""

    def __init__(self, config: FaultConfig | None = None, default_seed: int | None = None) -> None:
        self._lock = threading.Lock()
        #: Seed used when a :class:`FaultConfig` gives none (the emulator's seed).
        self.default_seed = default_seed
        self.config = FaultConfig()
        self.rng = random.Random()
        self.injected: dict[str, int] = {"rate_limit": 0, "server_error": 0}
        self.configure(config or FaultConfig())

    def configure(self, config: FaultConfig) -> None:
        with self._lock:
            self.config = dataclasses.replace(config)
            self.rng = random.Random(self.default_seed if config.seed is None else config.seed)
            self.injected = {"rate_limit": 0, "server_error": 0}

    def _applies(self, method: str, path: str) -> bool:
        cfg = self.config
        if cfg.methods and method.upper() not in {m.upper() for m in cfg.methods}:
            return False
        if cfg.paths:
            return any(path.startswith(p) for p in cfg.paths)
        return path.startswith("/v1/")

    def check_api(self, method: str, path: str) -> StripeAPIError | None:
        """The fault to answer this call with, if any (consumes counts)."""
        with self._lock:
            if not self._applies(method, path):
                return None
            cfg = self.config
            if cfg.rate_limit_count > 0 or (
                cfg.rate_limit_fraction > 0 and self.rng.random() < cfg.rate_limit_fraction
            ):
                if cfg.rate_limit_count > 0:
                    cfg.rate_limit_count -= 1
                self.injected["rate_limit"] += 1
                headers = {"Retry-After": str(max(0, math.ceil(cfg.retry_after)))}
                if cfg.rate_limit_should_retry:
                    headers["Stripe-Should-Retry"] = "true"
                return StripeAPIError(
                    429,
                    "Request rate limit exceeded. You can learn more about rate limits "
                    "here https://stripe.com/docs/rate-limits.",
                    code="rate_limit",
                    headers=headers,
                )
            if cfg.server_error_count > 0 or (
                cfg.server_error_fraction > 0 and self.rng.random() < cfg.server_error_fraction
            ):
                if cfg.server_error_count > 0:
                    cfg.server_error_count -= 1
                self.injected["server_error"] += 1
                headers = {}
                if cfg.server_error_should_retry is not None:
                    headers["Stripe-Should-Retry"] = str(cfg.server_error_should_retry).lower()
                return StripeAPIError(
                    cfg.server_error_status,
                    "An unknown error occurred (injected by the emulator).",
                    type="api_error",
                    headers=headers,
                )
            return None

    def chance(self, probability: float) -> bool:
        with self._lock:
            return probability > 0 and self.rng.random() < probability

    def pick(self, n: int) -> int:
        with self._lock:
            return self.rng.randrange(n)
