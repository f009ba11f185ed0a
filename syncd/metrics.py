"""Prometheus metrics. One registry per daemon so tests and several apps never collide."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.request_latency = Histogram(
            "syncd_http_request_duration_seconds",
            "HTTP request latency by route and status",
            ["route", "method", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.checks_total = Counter(
            "syncd_flag_checks_total",
            "Flag checks by matched rule type (default: no rule matched) and resulting value",
            ["rule_type", "value"],
            registry=r,
        )
        # Label children by (rule_type, value): the check path increments without a labels() lookup.
        self._check_counters: dict[tuple[str | None, bool], Counter] = {}
        self.sync_lag = Gauge(
            "syncd_stripe_sync_lag_seconds",
            "Seconds between a Stripe event's creation and its application",
            registry=r,
        )
        self.inbox_depth = Gauge(
            "syncd_inbox_pending", "Stripe events received but not applied yet", registry=r
        )
        self.outbox_depth = Gauge(
            "syncd_outbox_pending", "Adapter messages not delivered yet", ["adapter"], registry=r
        )
        self.delivery_failures = Counter(
            "syncd_delivery_failures_total", "Failed adapter deliveries", ["adapter"], registry=r
        )
        self.webhook_signature_failures = Counter(
            "syncd_stripe_webhook_signature_failures_total",
            "Inbound Stripe webhooks with a bad signature",
            registry=r,
        )
        self.scheduler_leader = Gauge(
            "syncd_scheduler_leader", "1 while this replica leads the cluster-wide jobs", registry=r
        )

    def record_check(self, rule_type: str | None, value: bool) -> None:
        """Count one flag check; called on the hot path, so cheap after the first of each kind."""
        counter = self._check_counters.get((rule_type, value))
        if counter is None:
            counter = self.checks_total.labels(rule_type or "default", "true" if value else "false")
            self._check_counters[(rule_type, value)] = counter
        counter.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
