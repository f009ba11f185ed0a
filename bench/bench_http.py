"""HTTP benchmark: `syncd run` with 2 workers on Postgres, loaded over loopback.

    python bench/bench_http.py [--quick] [--duration S] [--connections N] [--clients P]
                               [--client wrk|python] [--only abc]

Starts a real `syncd run` (``[server] workers = 2``, the demo catalog, a fresh Postgres
database), seeds companies on the Pro plan through the API, then drives three scenarios
with a closed-loop load generator over N keep-alive HTTP/1.1 connections:

- ``--client wrk`` (default when ``wrk`` is on PATH; ``apt-get install wrk``): wrk, in C,
  with P threads, rotating through the pre-encoded requests (a Lua script); a 1 s warm-up
  run first; latency percentiles from wrk's histogram. It costs ~20 µs of CPU per request,
  so the server gets most of the 2 cores.
- ``--client python``: P processes, each an asyncio loop on raw sockets (requests
  pre-encoded; each response read in full before the next request on that connection);
  the first second is warm-up. Costs ~80-100 µs of CPU per request.

(a) ``GET /healthz``, the framework floor: a trivial Starlette endpoint behind the full
    middleware stack on the same server.
(b) ``POST /flags/api-calls/check`` for a rotating set of companies (warm state).
(c) ``POST /batch`` of 100 track events per request into Postgres (always the asyncio
    client: every accepted batch, warm-up included, must be counted); afterwards the stored
    events and the counters are read back from the database and must match exactly.

Server CPU is read from /proc for the whole ``syncd run`` process tree, the client's from
its own processes, and for (c) the CPU of the Postgres backends serving the database.
Numbers only, printed as a table; nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, func, select, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from syncd.apikeys import create_key  # noqa: E402
from syncd.db import session_scope  # noqa: E402
from syncd.models import CompanyMetric, UsageEvent  # noqa: E402

PG_ADMIN_URL = os.environ.get("SYNCD_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
FLAG = "api-calls"
EVENT = "bench-call"
BATCH = 100  # the SDKs' buffer flushes at most 100 events per request
WARMUP_S = 1.0


# --- load generator ----------------------------------------------------------------------
@dataclass
class Result:
    latencies_us: array[int] = field(default_factory=lambda: array("q"))
    statuses: Counter[int] = field(default_factory=Counter)
    errors: int = 0
    measured_s: float = 0.0
    all_2xx: int = 0  # warm-up included: what the server must have stored
    client_cpu_s: float = 0.0  # CPU the load generator used, warm-up included
    server_cpu_s: float = 0.0  # CPU every syncd process used, warm-up included
    all_requests: int = 0
    percentiles: dict[str, float] | None = None  # from wrk (ms), instead of latencies_us


def encode(method: str, path: str, api_key: str, body: Any = None) -> bytes:
    payload = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
    head = (
        f"{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nx-schematic-api-key: {api_key}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(payload)}\r\n\r\n"
    )
    return head.encode() + payload


async def _connection(port: int, requests: list[bytes], offset: int, start: float, stop: float) -> Result:
    result = Result()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    clock, i = time.perf_counter, offset
    try:
        while True:
            t0 = clock()
            if t0 >= stop:
                break
            writer.write(requests[i % len(requests)])
            i += 1
            head = await reader.readuntil(b"\r\n\r\n")
            lower = head.lower()
            at = lower.find(b"content-length:")
            length = int(lower[at + 15 : lower.find(b"\r\n", at)]) if at >= 0 else 0
            if length:
                await reader.readexactly(length)
            t1 = clock()
            status = int(head[9:12])
            result.all_2xx += 200 <= status < 300
            result.all_requests += 1
            if t0 >= start:
                result.latencies_us.append(int((t1 - t0) * 1e6))
                result.statuses[status] += 1
    except (ConnectionError, asyncio.IncompleteReadError):
        result.errors += 1
    finally:
        writer.close()
    return result


def _client(
    port: int, requests: list[bytes], connections: int, seed: int, begin: float, duration: float
) -> Result:
    cpu0 = time.process_time()

    async def run() -> Result:
        # All clients share one wall-clock schedule (time.time): warm up, then measure.
        loop_offset = time.perf_counter() - time.time()
        start = begin + WARMUP_S + loop_offset
        stop = begin + WARMUP_S + duration + loop_offset
        parts = await asyncio.gather(
            *(_connection(port, requests, seed * 7919 + c * 104729, start, stop) for c in range(connections))
        )
        merged = Result(measured_s=duration)
        for part in parts:
            merged.latencies_us.extend(part.latencies_us)
            merged.statuses.update(part.statuses)
            merged.errors += part.errors
            merged.all_2xx += part.all_2xx
            merged.all_requests += part.all_requests
        return merged

    result = asyncio.run(run())
    result.client_cpu_s = time.process_time() - cpu0
    return result


def process_tree_cpu_s(root: int) -> float:
    """User+system CPU seconds of ``root`` and all its descendants (Linux /proc)."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry.name)] = int(fields[1])
        times[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    tree, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        children = [p for p, parent in parents.items() if parent == pid and p not in tree]
        tree.update(children)
        frontier.extend(children)
    return sum(times.get(p, 0.0) for p in tree)


def load(
    port: int, requests: list[bytes], *, connections: int, clients: int, duration: float, server_pid: int
) -> Result:
    server_cpu0 = process_tree_cpu_s(server_pid)
    per_client = [connections // clients + (1 if i < connections % clients else 0) for i in range(clients)]
    begin = time.time() + 0.5  # time for the client processes to start
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(clients) as pool:
        parts = pool.starmap(
            _client, [(port, requests, n, i, begin, duration) for i, n in enumerate(per_client) if n]
        )
    total = Result(measured_s=duration)
    for part in parts:
        total.latencies_us.extend(part.latencies_us)
        total.statuses.update(part.statuses)
        total.errors += part.errors
        total.all_2xx += part.all_2xx
        total.all_requests += part.all_requests
        total.client_cpu_s += part.client_cpu_s
    total.server_cpu_s = process_tree_cpu_s(server_pid) - server_cpu0
    return total


WRK_SCRIPT = """
local requests = {}
local n = 0
function init(args)
  local f = io.open(args[1], "rb")
  local data = f:read("*a")
  f:close()
  for part in string.gmatch(data, "([^%z]+)") do
    n = n + 1
    requests[n] = part
  end
  counter = math.random(n)
end
function request()
  counter = counter % n + 1
  return requests[counter]
end
"""


def load_wrk(
    port: int, requests: list[bytes], *, connections: int, clients: int, duration: float, server_pid: int
) -> Result:
    """The same closed loop driven by wrk (C, epoll; ``apt-get install wrk``): one thread per
    client, ``connections`` keep-alive connections. Latency percentiles come from wrk's HdrHistogram."""
    with tempfile.TemporaryDirectory(prefix="syncd-wrk-") as tmp:
        script, data = Path(tmp) / "rotate.lua", Path(tmp) / "requests.bin"
        script.write_text(WRK_SCRIPT)
        data.write_bytes(b"\0".join(requests))
        # Warm-up: a short run whose figures are discarded.
        argv = ["wrk", f"-t{clients}", f"-c{connections}", "--latency", "-s", str(script)]
        url = f"http://127.0.0.1:{port}"
        subprocess.run([*argv, f"-d{WARMUP_S:.0f}s", url, "--", str(data)], capture_output=True, check=True)
        server_cpu0 = process_tree_cpu_s(server_pid)
        child0 = os.times()
        out = subprocess.run(
            [*argv, f"-d{duration:.0f}s", url, "--", str(data)], capture_output=True, check=True, text=True
        ).stdout
        child1 = os.times()
    result = Result(measured_s=duration)
    result.server_cpu_s = process_tree_cpu_s(server_pid) - server_cpu0
    result.client_cpu_s = (child1.children_user - child0.children_user) + (
        child1.children_system - child0.children_system
    )
    total = int(out.split(" requests in ")[0].rsplit("\n", 1)[-1].strip())
    non2xx = 0
    for line in out.splitlines():
        if "Non-2xx or 3xx responses:" in line:
            non2xx = int(line.split(":")[1])
        if "Socket errors:" in line:
            result.errors = sum(int(part.split()[-1]) for part in line.split(":", 1)[1].split(","))
    result.statuses[200] = total - non2xx
    if non2xx:
        result.statuses[500] = non2xx
    result.all_requests = total
    result.all_2xx = total - non2xx  # the warm-up run's requests are not counted here
    result.percentiles = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] in ("50%", "99%"):
            result.percentiles[parts[0]] = _wrk_ms(parts[1])
    return result


def _wrk_ms(text: str) -> float:
    for unit, factor in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * factor
    return float(text)


def percentile(ordered: list[int], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] / 1000 if ordered else float("nan")


# --- the server under test ---------------------------------------------------------------
class Server:
    def __init__(self, workers: int) -> None:
        self.admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        self.db_name = f"syncd_bench_{secrets.token_hex(4)}"
        with self.admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{self.db_name}"'))
        self.url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{self.db_name}"
        self.tmp = tempfile.TemporaryDirectory(prefix="syncd-bench-")
        with socket_port() as port:
            self.port = port
        env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCD_")}
        env |= {
            "SYNCD_DATABASE_URL": self.url,
            "SYNCD_SERVER_WORKERS": str(workers),
            "SYNCD_DATA_DIR": self.tmp.name,
            "SYNCD_LOG_LEVEL": "warning",
            "SYNCD_LOG_FORMAT": "json",
            "SYNCD_STRIPE_EMULATOR_PORT": "0",
        }
        self.log = open(Path(self.tmp.name) / "server.log", "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "syncd", "run", "--port", str(self.port)],
            env=env,
            cwd=ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.base = f"http://127.0.0.1:{self.port}"
        self._wait_ready(workers)
        engine = create_engine(self.url)
        with session_scope(engine) as session:
            self.key = create_key(session, "secret", name="bench")[1]
        engine.dispose()

    def _wait_ready(self, workers: int, timeout: float = 120) -> None:
        deadline, pids = time.monotonic() + timeout, set()
        while len(pids) < workers:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"syncd did not start; see {self.log.name}")
            try:
                with httpx.Client(timeout=2) as client:  # a new connection each time: any worker
                    response = client.get(f"{self.base}/ready")
                if response.status_code == 200:
                    pids.add(response.json().get("pid"))
            except httpx.TransportError:
                pass
            time.sleep(0.05)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=60)
        self.log.close()
        with self.admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)'))
        self.admin.dispose()
        self.tmp.cleanup()
        return code


class socket_port:
    def __enter__(self) -> int:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        return None


def seed_companies(server: Server, n: int) -> list[dict[str, str]]:
    headers = {"X-Schematic-Api-Key": server.key}
    with httpx.Client(base_url=server.base, headers=headers, timeout=30) as client:
        plans = client.get("/plans").json()["data"]
        pro = next(p["id"] for p in plans if p["name"] == "Pro")
        keys = [{"bench_id": f"co-{i}"} for i in range(n)]
        for k in keys:
            response = client.post("/companies", json={"keys": k, "name": k["bench_id"], "base_plan_id": pro})
            response.raise_for_status()
    return keys


def wait_following(server: Server, company: dict[str, str], timeout: float = 30) -> None:
    """Both workers' stores have the seeded companies (checks answer with a company id)."""
    body = {"company": company}
    headers = {"X-Schematic-Api-Key": server.key}
    deadline = time.monotonic() + timeout
    hits = 0
    while hits < 20 and time.monotonic() < deadline:
        with httpx.Client(timeout=5) as client:
            r = client.post(f"{server.base}/flags/{FLAG}/check", json=body, headers=headers)
        hits = hits + 1 if r.status_code == 200 and r.json()["data"]["company_id"] else 0


def pg_cpu_s(server: Server) -> float:
    """CPU seconds of the Postgres backends serving the bench database (the ingest cost that
    the server's process tree does not show). Pooled connections persist, so a diff holds."""
    tick = os.sysconf("SC_CLK_TCK")
    with server.admin.connect() as conn:
        pids = conn.execute(
            text("SELECT pid FROM pg_stat_activity WHERE datname = :d"), {"d": server.db_name}
        ).scalars()
        total = 0.0
        for pid in pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def db_counts(server: Server) -> tuple[int, int]:
    engine = create_engine(server.url)
    with engine.connect() as conn:
        events = conn.execute(
            select(func.count()).select_from(UsageEvent).where(UsageEvent.event_subtype == EVENT)  # type: ignore[arg-type]
        ).scalar_one()
        total = conn.execute(
            select(func.coalesce(func.sum(CompanyMetric.value), 0)).where(
                CompanyMetric.event_subtype == EVENT,  # type: ignore[arg-type]
                CompanyMetric.period == "all_time",  # type: ignore[arg-type]
            )
        ).scalar_one()
    engine.dispose()
    return int(events), int(total)


# --- scenarios ---------------------------------------------------------------------------
@dataclass
class Row:
    name: str
    result: Result
    per_request: int = 1  # events per request
    target: str = ""
    note: str = ""

    def cells(self) -> list[str]:
        ok = sum(c for s, c in self.result.statuses.items() if 200 <= s < 300)
        bad = sum(self.result.statuses.values()) - ok + self.result.errors
        ordered = sorted(self.result.latencies_us)
        rate = ok / self.result.measured_s
        n = max(self.result.all_requests, 1)
        pcts = self.result.percentiles
        p50 = pcts["50%"] if pcts else percentile(ordered, 0.50)
        p99 = pcts["99%"] if pcts else percentile(ordered, 0.99)
        return [
            self.name,
            f"{ok:,}",
            f"{rate:,.0f}",
            f"{rate * self.per_request:,.0f}" if self.per_request > 1 else "",
            f"{p50:.2f}",
            f"{p99:.2f}",
            str(bad),
            f"{self.result.server_cpu_s / n * 1e6:,.0f}",
            f"{self.result.client_cpu_s / n * 1e6:,.0f}",
            self.target,
            self.note,
        ]


def table(rows: list[Row]) -> str:
    header = [
        "scenario",
        "ok requests",
        "req/s",
        "events/s",
        "p50 ms",
        "p99 ms",
        "non-2xx",
        "server CPU µs/req",
        "client CPU µs/req",
        "target",
        "note",
    ]
    lines = [header, *(r.cells() for r in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = ["| " + " | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) + " |" for line in lines]
    out.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs (a smoke test of the harness)")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per scenario")
    parser.add_argument("--connections", type=int, default=16, help="keep-alive connections in total")
    parser.add_argument("--clients", type=int, default=2, help="load-generator processes")
    parser.add_argument("--workers", type=int, default=2, help="syncd [server] workers")
    parser.add_argument("--companies", type=int, default=200)
    parser.add_argument("--only", default="abc", help="scenarios to run, e.g. 'b' or 'ac'")
    parser.add_argument(
        "--client",
        choices=("wrk", "python"),
        default="wrk" if shutil.which("wrk") else "python",
        help="load generator for (a) and (b): wrk (C; apt-get install wrk) or the asyncio client",
    )
    args = parser.parse_args()
    duration = 2.0 if args.quick else args.duration
    companies = 20 if args.quick else args.companies

    load_before = os.getloadavg()[0]
    print(f"starting syncd run (workers={args.workers}, Postgres) ...", file=sys.stderr)
    server = Server(args.workers)
    rows: list[Row] = []
    try:
        keys = seed_companies(server, companies)
        wait_following(server, keys[-1])
        opts = {
            "connections": args.connections,
            "clients": args.clients,
            "duration": duration,
            "server_pid": server.proc.pid,
        }

        drive = load_wrk if args.client == "wrk" else load
        if "a" in args.only:
            healthz = [encode("GET", "/healthz", server.key)]
            rows.append(Row("(a) GET /healthz", drive(server.port, healthz, **opts), note="framework floor"))
        if "b" in args.only:
            checks = [encode("POST", f"/flags/{FLAG}/check", server.key, {"company": k}) for k in keys]
            rows.append(
                Row(
                    "(b) POST /flags/{key}/check",
                    drive(server.port, checks, **opts),
                    target=">= 8,000/s, p99 <= 5 ms",
                )
            )
        if "c" in args.only:
            rows.append(ingest_row(server, keys, opts))
    finally:
        code = server.stop()
    print(
        f"\nsyncd run: {args.workers} workers, Postgres; load: {args.clients} client processes, "
        f"{args.connections} keep-alive connections ({args.client} for (a)/(b), asyncio for (c)), "
        f"{duration:.0f} s measured after "
        f"{WARMUP_S:.0f} s warm-up; {os.cpu_count()} CPUs shared by client and server; "
        f"load average before: {load_before:.1f}\n"
    )
    print(table(rows))
    print(f"\nserver exit code after SIGTERM: {code}")


def ingest_row(server: Server, keys: list[dict[str, str]], opts: dict[str, Any]) -> Row:
    """(c): 100-event batches; the stored events and counters must equal what was accepted."""
    before = db_counts(server)
    pg0 = pg_cpu_s(server)
    batches = [
        encode(
            "POST",
            "/batch",
            server.key,
            {
                "events": [
                    {"type": "track", "body": {"event": EVENT, "company": keys[(b + j) % len(keys)]}}
                    for j in range(BATCH)
                ]
            },
        )
        for b in range(len(keys))
    ]
    ingest = load(server.port, batches, **opts)
    after = db_counts(server)
    # Every accepted batch (warm-up included) must be in the database, each event once.
    stored, counted = after[0] - before[0], after[1] - before[1]
    exact = stored == counted == ingest.all_2xx * BATCH
    note = f"DB: {stored:,} events, counters {counted:,}: {'exact' if exact else 'MISMATCH'}"
    pg = pg_cpu_s(server) - pg0
    note += f"; Postgres backends {pg / max(ingest.all_requests, 1) * 1e3:.1f} ms CPU/req"
    return Row("(c) POST /batch (100 tracks)", ingest, BATCH, ">= 25,000 events/s", note)


if __name__ == "__main__":
    main()
