"""Shared benchmark fixtures: a realistic catalog compiled with syncd's engine, and timing helpers."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass

from syncd.engine.compile import (
    EntitlementSpec,
    build_entitlements,
    compile_override_rules,
    compile_plan_rules,
)
from syncd.engine.wire import (
    Company,
    CompanyMetric,
    Flag,
    Subscription,
    Trait,
    TraitDefinition,
)

UTC = dt.UTC
# Snapshots are only trusted until their next boundary, and the warm path reads the wall
# clock: the fixtures are built "now" so that the benchmark measures the warm path.
NOW = dt.datetime.now(UTC).replace(microsecond=0)
PLANS = ("free", "pro", "enterprise")
ADD_ONS = ("addon_api_boost", "addon_exports")
SEATS_USED = TraitDefinition("seats_used", "int", "company")
SEATS_BOUGHT = TraitDefinition("seats_bought", "int", "company")


@dataclass(slots=True)
class Catalog:
    flags: list[Flag]
    specs: list[EntitlementSpec]


def _specs_for_feature(i: int) -> list[EntitlementSpec]:
    """Entitlements for feature i across the three plans (a mix of every value type)."""
    key, flag_id = f"feature-{i}", f"flag_{i}"
    kind = i % 5
    out = []
    for tier, plan in enumerate(PLANS):
        common = {
            "feature_id": f"feat_{i}",
            "feature_key": key,
            "flag_id": flag_id,
            "plan_id": plan,
            "plan_version_id": f"{plan}_v1",
            "name": f"{plan} {key}",
        }
        sid = f"{plan}_{i}"
        if kind == 0:
            out.append(EntitlementSpec(sid, value_type="boolean", value_bool=tier > 0, **common))  # type: ignore[arg-type]
        elif kind in (1, 2):
            period = "current_month" if kind == 1 else "current_day"
            out.append(
                EntitlementSpec(
                    sid,
                    value_type="numeric",
                    value_numeric=100 * 10**tier,
                    event_subtype=f"event_{i}",
                    metric_period=period,
                    metric_period_month_reset="billing_cycle",
                    **common,
                )
            )  # type: ignore[arg-type]
        elif kind == 3:
            out.append(
                EntitlementSpec(
                    sid, value_type="trait", value_trait=SEATS_BOUGHT, usage_trait=SEATS_USED, **common
                )
            )  # type: ignore[arg-type]
        else:
            out.append(
                EntitlementSpec(
                    sid, value_type="credit", credit_id="tokens", consumption_rate=0.5 * (tier + 1), **common
                )
            )  # type: ignore[arg-type]
    return out


def build_catalog(n_flags: int = 20) -> Catalog:
    specs: list[EntitlementSpec] = []
    for i in range(n_flags):
        specs.extend(_specs_for_feature(i))
    # The metered feature-1 also has two add-ons: a boost and an unlimited tier.
    common = {"feature_id": "feat_1", "feature_key": "feature-1", "flag_id": "flag_1"}
    specs.append(
        EntitlementSpec(
            "boost_1",
            value_type="numeric",
            value_numeric=50_000,
            event_subtype="event_1",
            metric_period="current_month",
            metric_period_month_reset="billing_cycle",
            plan_id=ADD_ONS[0],
            **common,
        )
    )  # type: ignore[arg-type]
    specs.append(
        EntitlementSpec(
            "exports_6",
            value_type="unlimited",
            plan_id=ADD_ONS[1],
            feature_id="feat_6",
            feature_key="feature-6",
            flag_id="flag_6",
        )
    )
    flags = [
        Flag(f"flag_{i}", f"feature-{i}", False, compile_plan_rules(specs, f"flag_{i}", NOW))
        for i in range(n_flags)
    ]
    return Catalog(flags, specs)


def override_for(company_id: str) -> EntitlementSpec:
    """A per-company override on the metered feature-1 (smaller than the add-on: most generous wins)."""
    return EntitlementSpec(
        f"ovr_{company_id}",
        "feat_1",
        "feature-1",
        "flag_1",
        "numeric",
        value_numeric=20_000,
        event_subtype="event_1",
        metric_period="current_month",
        metric_period_month_reset="billing_cycle",
        company_id=company_id,
        expires_at=NOW + dt.timedelta(days=30),
    )


def build_company(catalog: Catalog, n: int, *, with_override: bool = True) -> Company:
    cid = f"co_{n}"
    company = Company(
        id=cid,
        keys={"stripe_customer_id": f"cus_{n}"},
        base_plan_id="pro",
        plan_ids=["pro", *ADD_ONS],
        plan_version_ids=["pro_v1"],
        billing_product_ids=["prod_pro"],
        credit_balances={"tokens": float(n % 50)},
        metrics=[
            CompanyMetric(
                f"event_{i}",
                "current_month" if i % 5 == 1 else "current_day",
                "billing_cycle",
                (n * 7 + i) % 3000,
                company_id=cid,
            )
            for i in range(len(catalog.flags))
        ],
        subscription=Subscription("sub", NOW - dt.timedelta(days=40 + n % 20), NOW + dt.timedelta(days=325)),
        traits=[Trait(str(n % 12), SEATS_USED), Trait("10", SEATS_BOUGHT)],
    )
    specs = catalog.specs + ([override_for(cid)] if with_override else [])
    company.rules = compile_override_rules(specs, cid, NOW)
    company.entitlements = build_entitlements(specs, company, NOW)
    return company


def percentiles(samples_ns: list[int]) -> tuple[float, float]:
    """(p50, p99) in microseconds."""
    ordered = sorted(samples_ns)
    n = len(ordered)
    return ordered[n // 2] / 1000, ordered[min(n - 1, (n * 99) // 100)] / 1000


def time_each(fn: Callable[[], object], n: int) -> list[int]:
    """Per-call latencies in ns, timed individually with perf_counter_ns."""
    clock = time.perf_counter_ns
    out = [0] * n
    for i in range(n):
        t0 = clock()
        fn()
        out[i] = clock() - t0
    return out
