"""Benchmark syncd's entitlement engine against the official WASM engine.

    python bench/bench_engine.py [--quick]

Prints a table: warm snapshot checks of a metered feature (company on a base plan with two
add-ons and an override), the same check through the schematichq SDK's local WASM engine,
their ratio, one company's snapshot recompute, and recomputing many companies in-process.
Numbers only: nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import NOW, build_catalog, build_company, percentiles, time_each
from syncd.engine.evaluator import Evaluator
from syncd.engine.flagcheck import check_flag
from syncd.engine.snapshot import build_snapshot, plan_flags

FLAG_KEY = "feature-1"  # metered: plan limit, two add-ons (one a boost), an override


def wasm_checkers(
    flag_wire: dict[str, Any], company_wire: dict[str, Any]
) -> tuple[Callable[[], Any], Callable[[], Any]]:
    """The SDK's own local-evaluation call (pydantic models -> JSON envelope -> WASM), and the
    bare module call with the envelope already serialized (the engine's floor)."""
    from schematic.datastream.rules_engine import RulesEngineClient
    from schematic.types.rulesengine_company import RulesengineCompany
    from schematic.types.rulesengine_flag import RulesengineFlag

    client = RulesEngineClient()
    asyncio.run(client.initialize())
    flag, company = RulesengineFlag(**flag_wire), RulesengineCompany(**company_wire)
    envelope = json.dumps({"flag": flag_wire, "company": company_wire, "user": None})
    return (lambda: client.check_flag(flag, company)), (lambda: client._call_wasm(envelope))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations (CI smoke run)")
    args = parser.parse_args()
    n_checks = 100_000 if args.quick else 1_000_000
    n_wasm = 2_000 if args.quick else 20_000
    n_companies = 10_000 if args.quick else 100_000

    catalog = build_catalog(20)
    company = build_company(catalog, 1)
    ev = Evaluator(catalog.flags)
    ev.update_company(company, now=NOW)
    flag = ev.flags[FLAG_KEY]

    # Same inputs, both engines, same answer (a benchmark of the wrong thing is worthless).
    ours = check_flag(flag, company, None, None, NOW)
    wasm_call, wasm_raw = wasm_checkers(flag.to_wire(), company.to_wire())
    theirs = wasm_call()
    assert (ours.value, ours.rule_id) == (theirs.value, theirs.rule_id), (ours, theirs)

    rows: list[tuple[str, str]] = []
    gc.disable()
    check = ev.check
    # Warm up, then time each check; the snapshot is valid until the next daily/monthly reset.
    time_each(lambda: check("co_1", FLAG_KEY), 10_000)
    p50, p99 = percentiles(time_each(lambda: check("co_1", FLAG_KEY), n_checks))
    rows.append((f"syncd warm check ({n_checks:,} checks)", f"p50 {p50:.2f} us   p99 {p99:.2f} us"))

    full_p50, full_p99 = percentiles(
        time_each(lambda: check_flag(flag, company, None, None, NOW), n_checks // 20)
    )
    rows.append(("syncd full evaluation (no snapshot)", f"p50 {full_p50:.1f} us   p99 {full_p99:.1f} us"))

    time_each(wasm_call, 200)
    w50, w99 = percentiles(time_each(wasm_call, n_wasm))
    rows.append((f"official WASM engine via SDK ({n_wasm:,} checks)", f"p50 {w50:.1f} us   p99 {w99:.1f} us"))
    rows.append(("ratio WASM (SDK) / syncd warm", f"p50 {w50 / p50:,.0f}x   p99 {w99 / p99:,.0f}x"))
    r50, r99 = percentiles(time_each(wasm_raw, n_wasm))
    rows.append(("official WASM, bare module call", f"p50 {r50:.1f} us   p99 {r99:.1f} us"))
    rows.append(("ratio WASM (bare) / syncd warm", f"p50 {r50 / p50:,.0f}x   p99 {r99 / p99:,.0f}x"))
    gc.enable()

    plans = plan_flags(catalog.flags)  # per-catalog work the Evaluator does once per set_flags
    one = [build_snapshot(company, plans, NOW) for _ in range(3)]  # warm-up
    samples = time_each(lambda: build_snapshot(company, plans, NOW), 1000)
    s50, s99 = percentiles(samples)
    rows.append(
        (
            f"snapshot recompute, 1 company x {len(catalog.flags)} flags",
            f"p50 {s50 / 1000:.3f} ms   p99 {s99 / 1000:.3f} ms",
        )
    )
    del one

    companies = [build_company(catalog, i) for i in range(n_companies)]
    # Long-lived inputs: keep the cyclic GC from rescanning them on every collection, as a
    # server would after loading its companies.
    gc.collect()
    gc.freeze()
    bulk = Evaluator(catalog.flags)
    t0 = time.perf_counter()
    for c in companies:
        bulk.update_company(c, now=NOW)
    elapsed = time.perf_counter() - t0
    rows.append(
        (
            f"recompute {n_companies:,} companies in-process",
            f"{elapsed:.1f} s   ({elapsed / n_companies * 1e6:.0f} us/company, "
            f"{n_companies / elapsed:,.0f}/s)",
        )
    )
    rows.append(("  (storage-backed, Postgres)", "not measured here"))

    width = max(len(r[0]) for r in rows)
    print(
        f"syncd engine benchmark  (python {sys.version.split()[0]}, {'quick' if args.quick else 'full'} run)"
    )
    print("-" * (width + 40))
    for label, value in rows:
        print(f"{label:<{width}}  {value}")
    print("-" * (width + 40))


if __name__ == "__main__":
    main()
