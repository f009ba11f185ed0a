"""Prometheus metrics: flag checks counted by rule type and value."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from syncd.metrics import Metrics


def samples(metrics: Metrics, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    found: dict[tuple[tuple[str, str], ...], float] = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def test_checks_are_counted_by_rule_type_and_value() -> None:
    metrics = Metrics()
    for _ in range(3):
        metrics.record_check("plan_entitlement", True)
    metrics.record_check("plan_entitlement", False)
    metrics.record_check(None, False)
    assert samples(metrics, "syncd_flag_checks_total") == {
        (("rule_type", "plan_entitlement"), ("value", "true")): 3.0,
        (("rule_type", "plan_entitlement"), ("value", "false")): 1.0,
        (("rule_type", "default"), ("value", "false")): 1.0,
    }
