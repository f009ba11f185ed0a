"""One runner for every performance target of issues #3, #4, #5 and #8, with baselines.

    flock /tmp/bench.lock python bench/run.py [--quick] [--markdown bench/RESULTS.md] [--json out.json]
    make bench            # the full run, results section written into bench/RESULTS.md

Prints ONE table: each target's measured figure, the target, met / missed, and ratios to two
baselines measured in the same run:

(a) the hand-rolled pattern of ``shared/seeds/002_*`` (``bench/baseline_handrolled.py``: Redis GET
    of the entitlements JSON plus a SQL COUNT of this month's usage per check, one INSERT per
    tracked event, plan lookup + upsert + Redis DEL per subscription webhook) on the real
    Redis and Postgres with the same data;
(b) the official Schematic SDK evaluating the same data locally (its WebAssembly rules engine,
    as in replicator mode).

A ratio reads "how many times better syncd is" (> 1x: syncd wins). Each benchmark script in
``bench/`` still runs on its own; this runner imports the stable helpers (``bench._common``,
``bench_engine.wasm_checkers``) and runs the others as subprocesses with their documented CLI
arguments, parsing their printed figures, so their internals can change freely.

``--quick`` shrinks every size (CI: it asserts only that every row is produced, with a number;
targets are judged on the full run). Wrap runs in ``flock /tmp/bench.lock`` on a shared machine.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

POSTGRES = os.environ.get("SYNCD_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS = os.environ.get("SYNCD_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
BEGIN, END = "<!-- bench/run.py: begin -->", "<!-- bench/run.py: end -->"
FLAG_KEY, EVENT = "feature-1", "event_1"  # bench._common's metered feature


@dataclass(frozen=True)
class Target:
    group: str
    issue: str
    name: str
    unit: str
    target: float
    higher: bool  # higher is better


# Every performance target of issues #3, #4, #5 and #8, in table order (tests check each has a row).
TARGETS = (
    Target("engine", "#3", "warm check p50", "µs", 3, False),
    Target("engine", "#3", "warm check p99", "µs", 15, False),
    Target("engine", "#3", "warm check vs official WASM engine (p50 ratio)", "x", 100, True),
    Target("engine", "#3", "recompute one company's snapshot (p50)", "ms", 1, False),
    Target("recompute", "#3", "recompute 100,000 companies after a plan publish", "s", 20, False),
    Target("http", "#4", "POST /flags/{key}/check throughput", "req/s", 8000, True),
    Target("http", "#4", "POST /flags/{key}/check p99", "ms", 5, False),
    Target("http", "#4", "POST /batch track ingestion into Postgres", "events/s", 25_000, True),
    Target(
        "stripe",
        "#5",
        "Stripe events end to end (verified, stored, applied, change log)",
        "events/s",
        1000,
        True,
    ),
    Target("stripe", "#5", "webhook receipt -> change published to Redis p99", "ms", 50, False),
    Target("stripe", "#5", "full sweep, objects applied locally", "objects/s", 10_000, True),
    Target("stripe", "#5", "full sweep peak RSS", "MB", 300, False),
    Target("middleware", "#8", "middleware added per gated request", "µs", 10, False),
    Target("middleware", "#8", "gated route rps vs ungated (in process)", "%", 95, True),
    Target("middleware", "#8", "gated route rps vs ungated (uvicorn)", "%", 95, True),
    Target("middleware", "#8", "gated route capacity vs ungated (instructions)", "%", 95, True),
    Target("redis", "#8", "publish one company change to Redis (p50)", "ms", 1, False),
    Target("webhooks", "#8", "outbound webhook deliveries to a local receiver", "deliveries/s", 500, True),
)
GROUPS = tuple(dict.fromkeys(t.group for t in TARGETS))


@dataclass
class Row:
    issue: str
    target_name: str
    measured: float | None  # None: the benchmark failed (see note)
    unit: str
    target: float
    higher_is_better: bool
    vs_handrolled: float | None = None  # syncd / baseline, oriented so > 1 means syncd is better
    vs_sdk: float | None = None
    note: str = ""
    met: bool | None = field(default=None)

    def judge(self, quick: bool) -> None:
        if self.measured is None:
            self.met = None
        else:
            ok = self.measured >= self.target if self.higher_is_better else self.measured <= self.target
            self.met = ok


def ratio(syncd: float | None, baseline: float | None, higher_is_better: bool) -> float | None:
    if not syncd or not baseline or syncd < 0:  # a cost measured below zero is noise: no ratio
        return None
    return syncd / baseline if higher_is_better else baseline / syncd


# --- helpers -------------------------------------------------------------------------------
def run_script(args: list[str], timeout: float) -> str:
    """Run a bench script with this interpreter; its stdout (stderr appended on failure)."""
    proc = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{args[0]} exited {proc.returncode}: {(proc.stderr or proc.stdout)[-800:]}")
    return proc.stdout


def grab(pattern: str, text: str) -> float:
    found = re.search(pattern, text)
    if found is None:
        raise RuntimeError(f"no figure matching {pattern!r} in the output:\n{text[-1500:]}")
    return float(found.group(1).replace(",", ""))


def guarded(rows: list[Row], make: Callable[[], list[Row]], fallback: list[Row]) -> None:
    """Run one benchmark group; a failure yields its rows without numbers, and the reason."""
    try:
        rows.extend(make())
    except Exception as exc:  # a broken benchmark must not hide the others' figures
        reason = f"FAILED: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
        print(reason, file=sys.stderr)
        for row in fallback:
            row.note = reason
        rows.extend(fallback)


# --- baselines -----------------------------------------------------------------------------
@dataclass
class Baselines:
    hr_check_p50_us: float | None = None
    hr_check_p99_us: float | None = None
    hr_track_per_s: float | None = None
    hr_webhook_p50_us: float | None = None
    hr_webhook_per_s: float | None = None
    sdk_check_p50_us: float | None = None
    sdk_check_p99_us: float | None = None


def engine_rows(quick: bool, base: Baselines) -> list[Row]:
    from bench._common import NOW, build_catalog, build_company, percentiles, time_each
    from bench.baseline_handrolled import handrolled, measure
    from bench.bench_engine import wasm_checkers
    from syncd.engine.evaluator import Evaluator
    from syncd.engine.flagcheck import check_flag
    from syncd.engine.snapshot import build_snapshot, plan_flags

    n_checks, n_wasm, n_base = (20_000, 500, 300) if quick else (1_000_000, 20_000, 5_000)
    catalog = build_catalog(20)
    company = build_company(catalog, 1)
    ev = Evaluator(catalog.flags)
    ev.update_company(company, now=NOW)
    flag = ev.flags[FLAG_KEY]
    ours = check_flag(flag, company, None, None, NOW)
    wasm_call, _ = wasm_checkers(flag.to_wire(), company.to_wire())
    theirs = wasm_call()
    assert (ours.value, ours.rule_id) == (theirs.value, theirs.rule_id), (ours, theirs)

    with handrolled(POSTGRES, REDIS, company, FLAG_KEY, EVENT) as hr:
        assert hr.check_access(company.id, FLAG_KEY) == ours.value  # same data, same answer
        figures = measure(hr, company.id, FLAG_KEY, n_base)
    base.hr_check_p50_us, base.hr_check_p99_us = figures["check_p50_us"], figures["check_p99_us"]
    base.hr_track_per_s = figures["track_per_s"]
    base.hr_webhook_p50_us, base.hr_webhook_per_s = figures["webhook_p50_us"], figures["webhook_per_s"]

    gc.disable()
    try:
        check = ev.check
        time_each(lambda: check(company.id, FLAG_KEY), 5_000)
        p50, p99 = percentiles(time_each(lambda: check(company.id, FLAG_KEY), n_checks))
        time_each(wasm_call, 100)
        w50, w99 = percentiles(time_each(wasm_call, n_wasm))
    finally:
        gc.enable()
    base.sdk_check_p50_us, base.sdk_check_p99_us = w50, w99
    plans = plan_flags(catalog.flags)
    time_each(lambda: build_snapshot(company, plans, NOW), 20)
    s50, _ = percentiles(time_each(lambda: build_snapshot(company, plans, NOW), 100 if quick else 1000))
    note = f"{n_checks:,} checks; metered feature, base plan + 2 add-ons + override, 20 flags"
    return [
        Row(
            "#3",
            "warm check p50",
            p50,
            "µs",
            3,
            False,
            ratio(p50, base.hr_check_p50_us, False),
            ratio(p50, w50, False),
            note,
        ),
        Row(
            "#3",
            "warm check p99",
            p99,
            "µs",
            15,
            False,
            ratio(p99, base.hr_check_p99_us, False),
            ratio(p99, w99, False),
            note,
        ),
        Row(
            "#3",
            "warm check vs official WASM engine (p50 ratio)",
            w50 / p50,
            "x",
            100,
            True,
            note=f"WASM via the SDK's check_flag: p50 {w50:.0f} µs, p99 {w99:.0f} µs",
        ),
        Row(
            "#3",
            "recompute one company's snapshot (p50)",
            s50 / 1000,
            "ms",
            1,
            False,
            note="20 flags, in-process",
        ),
    ]


def recompute_rows(quick: bool) -> list[Row]:
    n = 200 if quick else 100_000
    # --everyone: every plan gets a new version, so every company moves and is recomputed.
    out = run_script(
        ["bench/bench_recompute.py", "--companies", str(n), "--everyone"], timeout=300 if quick else 3600
    )
    total = grab(r"every snapshot recomputed:\s*([\d.,]+) s", out)
    note = f"{n:,} companies on Postgres, all moved by the publish" + (
        " (quick: the target is for 100,000)" if quick else ""
    )
    return [Row("#3", "recompute 100,000 companies after a plan publish", total, "s", 20, False, note=note)]


def http_rows(quick: bool, base: Baselines) -> list[Row]:
    args = ["bench/bench_http.py"] + (["--quick", "--duration", "1", "--companies", "10"] if quick else [])
    out = run_script(args, timeout=300 if quick else 1800)
    table = parse_markdown_table(out)

    def cell(prefix: str, *names: str) -> float:
        for row in table:
            if row.get("scenario", "").startswith(prefix):
                for name in names:
                    if row.get(name):
                        return float(row[name].replace(",", ""))
        raise RuntimeError(f"bench_http: no {names} for {prefix!r} in:\n{out[-1500:]}")

    floor = cell("(a)", "req/s")
    checks, p99_ms = cell("(b)", "req/s"), cell("(b)", "p99 ms")
    events = cell("(c)", "events/s")
    hr_checks = 1e6 / base.hr_check_p50_us if base.hr_check_p50_us else None
    sdk_checks = 1e6 / base.sdk_check_p50_us if base.sdk_check_p50_us else None
    note = (
        f"2 workers, Postgres, loopback; trivial endpoint (GET /healthz) {floor:,.0f} req/s in the same run"
    )
    return [
        Row(
            "#4",
            "POST /flags/{key}/check throughput",
            checks,
            "req/s",
            8000,
            True,
            ratio(checks, hr_checks, True),
            ratio(checks, sdk_checks, True),
            note + "; baselines: one caller's checks/s",
        ),
        Row(
            "#4",
            "POST /flags/{key}/check p99",
            p99_ms,
            "ms",
            5,
            False,
            ratio(p99_ms * 1000, base.hr_check_p99_us, False),
            None,
            note,
        ),
        Row(
            "#4",
            "POST /batch track ingestion into Postgres",
            events,
            "events/s",
            25_000,
            True,
            ratio(events, base.hr_track_per_s, True),
            None,
            "exact counts checked by bench_http; baseline: one INSERT per event",
        ),
    ]


def parse_markdown_table(text: str) -> list[dict[str, str]]:
    lines = [line for line in text.splitlines() if line.startswith("|")]
    if not lines:
        return []
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = []
    for line in lines[1:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if set("".join(cells)) <= {"-", ":"}:
            continue
        rows.append(dict(zip(header, cells, strict=False)))
    return rows


STRIPE_QUICK = """
import json, sys, tempfile
sys.path.insert(0, {root!r})
import bench.bench_stripe_sync as b
b.use_objects("stripe")
out = {{}}
with b.fresh_database({pg!r}) as url, tempfile.TemporaryDirectory() as data_dir:
    server = b.Server(url, data_dir, redis_url={redis!r})
    try:
        out["throughput"] = b.throughput(server, {events})
        out["latency"] = b.latency(server, {rate}, {seconds})
    finally:
        server.stop()
with b.fresh_database({pg!r}) as url:
    out["sweep"] = b.sweep_rate(url, {customers})
print("RESULT " + json.dumps(out))
"""


def stripe_rows(quick: bool, base: Baselines) -> list[Row]:
    if quick:
        # bench_stripe_sync's own --quick takes minutes at today's apply rate: call its
        # functions with smaller sizes instead.
        script = STRIPE_QUICK.format(
            root=str(ROOT), pg=POSTGRES, redis=REDIS, events=30, rate=20.0, seconds=1.0, customers=30
        )
        out = run_script(["-c", script], timeout=300)
        data = json.loads(out.split("RESULT ", 1)[1])
        per_s = data["throughput"]["events_per_s"]
        if "pub_p99_ms" not in data["latency"]:
            raise RuntimeError(f"no publication to Redis measured (is Redis at {REDIS} up?)")
        p99, applied_p99 = data["latency"]["pub_p99_ms"], data["latency"]["p99_ms"]
        sweep = data["sweep"]["objects_per_s"]
        rss = data["sweep"]["peak_rss_mb"]
        resweep = data["sweep"]["resweep_per_s"]
        rate_note = "quick: 20 events/s (target measured at 200 events/s)"
    else:
        out = run_script(["bench/bench_stripe_sync.py", "--redis", REDIS], timeout=3600)
        per_s = grab(r"end to end: .*?([\d,.]+) events/s applied", out)
        p99 = grab(r"receipt -> published to Redis .*?p99 ([\d,.]+) ms", out)
        applied_p99 = grab(r"receipt -> applied .*?p99 ([\d,.]+) ms", out)
        sweep = grab(r"sweep: .*? at ([\d,.]+) objects/s", out)
        rss = grab(r"peak RSS ([\d,.]+) MB", out)
        resweep = grab(r"re-sweep of the unchanged objects: ([\d,.]+) objects/s", out)
        rate_note = "200 events/s"
    hr_note = "baseline: plan lookup + upsert + Redis DEL per event, no verification/inbox/dedupe"
    return [
        Row(
            "#5",
            "Stripe events end to end (verified, stored, applied, change log)",
            per_s,
            "events/s",
            1000,
            True,
            ratio(per_s, base.hr_webhook_per_s, True),
            None,
            hr_note,
        ),
        Row(
            "#5",
            "webhook receipt -> change published to Redis p99",
            p99,
            "ms",
            50,
            False,
            note=f"{rate_note}; receipt -> applied (change log committed) p99 {applied_p99:.1f} ms",
        ),
        Row(
            "#5",
            "full sweep, objects applied locally",
            sweep,
            "objects/s",
            10_000,
            True,
            note=(
                "new customers + subscriptions as Stripe lists them, 2 threads; "
                f"unchanged re-sweep {resweep:,.0f} objects/s"
            ),
        ),
        Row("#5", "full sweep peak RSS", rss, "MB", 300, False),
    ]


# A difference of two medians: on a busy machine a quick run can measure it below zero.
MIDDLEWARE_ADDED = r"added to a Starlette route by gating it:\s*(-?[\d.]+) us"


def middleware_rows(quick: bool, base: Baselines) -> list[Row]:
    args = ["bench/bench_middleware.py", "--uvicorn"] + (["--quick"] if quick else [])
    out = run_script(args, timeout=300 if quick else 1800)
    added = grab(MIDDLEWARE_ADDED, out)
    in_process = grab(r"gated route requests/s vs same route ungated:\s*([\d.]+)%", out)
    rows = [
        Row(
            "#8",
            "middleware added per gated request",
            added,
            "µs",
            10,
            False,
            ratio(added, base.hr_check_p50_us, False),
            ratio(added, base.sdk_check_p50_us, False),
            "CPU per request in process; baselines: one check's latency",
        ),
        Row(
            "#8",
            "gated route rps vs ungated (in process)",
            in_process,
            "%",
            95,
            True,
            note="in process a Starlette request is ~13 µs, so this is the strictest reading",
        ),
    ]
    served = grab(r"gated vs ungated, together, requests/s as measured:\s*([\d.]+)%", out)
    note = (
        "uvicorn, 1 worker each, pinned to one CPU and loaded together by wrk; median of per-round "
        "ratios of requests/s"
    )
    rows.append(Row("#8", "gated route rps vs ungated (uvicorn)", served, "%", 95, True, note=note))
    instructions = grab(r"gated vs ungated, capacity from instructions:\s*([\d.]+)%", out)
    note = "the same servers under callgrind: instructions per request, independent of the machine's load"
    rows.append(
        Row("#8", "gated route capacity vs ungated (instructions)", instructions, "%", 95, True, note=note)
    )
    return rows


def redis_rows(quick: bool, base: Baselines) -> list[Row]:
    out = run_script(
        ["bench/bench_redis.py", "--redis", REDIS, "--n", "100" if quick else "2000"], timeout=600
    )
    p50 = grab(r"publish one company change \(n=\d+\): p50 ([\d.]+) ms", out)
    return [
        Row(
            "#8",
            "publish one company change to Redis (p50)",
            p50,
            "ms",
            1,
            False,
            ratio(p50 * 1000, base.hr_webhook_p50_us, False),
            None,
            "baseline: the seed's invalidation (upsert + DEL), which leaves the next check to refill",
        ),
    ]


def webhook_rows(quick: bool) -> list[Row]:
    n = 200 if quick else 5000
    out = run_script(["bench/bench_webhooks.py", "--deliveries", str(n), "--companies", str(n // 10)], 600)
    rate = grab(r"throughput: ([\d,.]+) deliveries/s", out)
    return [
        Row(
            "#8",
            "outbound webhook deliveries to a local receiver",
            rate,
            "deliveries/s",
            500,
            True,
            note=f"{n:,} deliveries, SQLite, standardwebhooks-verified",
        )
    ]


# --- machine and output --------------------------------------------------------------------
def machine() -> dict[str, str]:
    info = {
        "cpus": str(os.cpu_count()),
        "cpu_model": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "load_average": f"{os.getloadavg()[0]:.1f}",
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
        mem = Path("/proc/meminfo").read_text().split()[1]
        info["memory"] = f"{int(mem) / 1024 / 1024:.0f} GiB"
    except OSError:
        pass
    try:
        import psycopg

        with psycopg.connect(POSTGRES.replace("postgresql+psycopg://", "postgresql://")) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            info["postgres"] = str(row[0]) if row else "?"
    except Exception as exc:
        info["postgres"] = f"unavailable ({type(exc).__name__})"
    try:
        import redis

        client = redis.Redis.from_url(REDIS)
        info["redis"] = str(client.info("server")["redis_version"])
        client.close()
    except Exception as exc:
        info["redis"] = f"unavailable ({type(exc).__name__})"
    return info


def fmt(value: float | None) -> str:
    if value is None:
        return "—"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def markdown(rows: list[Row], info: dict[str, str], quick: bool, elapsed: float) -> str:
    verdict = {True: "met", False: "**missed**", None: "no figure"}
    mode = "quick: sizes reduced, targets not judged" if quick else "full"
    lines = [
        f"Run: `python bench/run.py{' --quick' if quick else ''}` ({mode}),"
        f" {elapsed:.0f} s, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        f"Machine: {info.get('cpus')} CPUs ({info.get('cpu_model')}), {info.get('memory', '?')}, Python "
        f"{info.get('python')}, PostgreSQL {info.get('postgres')}, Redis {info.get('redis')}, "
        f"load average at start {info.get('load_average')}.",
        "",
        "Ratios: how many times better syncd is than (a) the hand-rolled Redis GET + SQL COUNT "
        "pattern of the seed and (b) the official SDK's WASM engine on the same data, same run "
        "(> 1x: syncd better; — : no comparable baseline).",
        "",
        "| Issue | Target | Measured | Goal | Verdict | vs hand-rolled (a) | vs SDK WASM (b) | Note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        goal = f"{'≥' if r.higher_is_better else '≤'} {fmt(r.target)} {r.unit}"
        a = f"{r.vs_handrolled:,.1f}x" if r.vs_handrolled else "—"
        b = f"{r.vs_sdk:,.1f}x" if r.vs_sdk else "—"
        met = verdict[r.met] if not quick or r.met is None else ("met" if r.met else "missed (quick)")
        figure = f"{fmt(r.measured)} {r.unit}"
        lines.append(f"| {r.issue} | {r.target_name} | {figure} | {goal} | {met} | {a} | {b} | {r.note} |")
    return "\n".join(lines) + "\n"


def write_section(path: Path, section: str) -> None:
    block = f"{BEGIN}\n## All targets (`bench/run.py`)\n\n{section}{END}\n"
    text = path.read_text() if path.exists() else "# Benchmark results\n\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1].lstrip("\n")
    else:
        # After the title, before the per-benchmark sections.
        title, _, body = text.partition("\n\n")
        text = f"{title}\n\n{block}\n{body}"
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (CI smoke run, ~1 minute)")
    parser.add_argument("--markdown", type=Path, help="write the table into this file's bench/run.py section")
    parser.add_argument("--json", type=Path, help="also write the rows and machine as JSON")
    parser.add_argument(
        "--only", help="comma-separated groups: engine,recompute,http,stripe,middleware,redis,webhooks"
    )
    args = parser.parse_args()
    started = time.monotonic()
    info = machine()
    base = Baselines()
    rows: list[Row] = []
    groups: dict[str, Callable[[], list[Row]]] = {
        "engine": lambda: engine_rows(args.quick, base),
        "recompute": lambda: recompute_rows(args.quick),
        "http": lambda: http_rows(args.quick, base),
        "stripe": lambda: stripe_rows(args.quick, base),
        "middleware": lambda: middleware_rows(args.quick, base),
        "redis": lambda: redis_rows(args.quick, base),
        "webhooks": lambda: webhook_rows(args.quick),
    }
    wanted = args.only.split(",") if args.only else list(groups)
    for name in wanted:  # engine first: it measures the baselines the others compare with
        t0 = time.monotonic()
        fallback = [
            Row(t.issue, t.name, None, t.unit, t.target, t.higher) for t in TARGETS if t.group == name
        ]
        guarded(rows, groups[name], fallback)
        # Each group's rows as soon as they exist: a long full run interrupted keeps its figures.
        print(
            f"[{name}] {time.monotonic() - t0:.1f} s:",
            json.dumps([asdict(r) for r in rows[-len(fallback) :]]),
            file=sys.stderr,
            flush=True,
        )
    for row in rows:
        row.judge(args.quick)
    section = markdown(rows, info, args.quick, time.monotonic() - started)
    print(section)
    if args.markdown:
        write_section(args.markdown, section)
    if args.json:
        args.json.write_text(
            json.dumps({"machine": info, "quick": args.quick, "rows": [asdict(r) for r in rows]}, indent=2)
        )


if __name__ == "__main__":
    main()
