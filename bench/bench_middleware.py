"""Benchmark the entitlement middleware's per-request cost, in process.

    python bench/bench_middleware.py [--quick] [--uvicorn [--client wrk|python] [--control]
                                                [--no-pin] [--no-callgrind]]

Requests are driven straight through the ASGI callable (no server, no sockets), so the
middleware's cost is not hidden behind network and HTTP parsing. Measured in the same run,
interleaved in rounds (median of rounds reported):

- a bare ASGI app, alone and behind the middleware with a config gate (the middleware alone);
- a Starlette app: the route without the middleware (baseline), the same route ungated behind
  the middleware (pass-through), and the same endpoint gated (decorator; an allowed company on
  a 20-flag catalog, identified by header, decided from the replica's compiled snapshot).

With ``--uvicorn``, the same two Starlette apps (without the middleware; with it, gated route)
are also served by real uvicorn processes (1 worker each), plus a second copy of the app
without the middleware (an A/A pair: the method's own noise in this run). Load: HTTP/1.1
keep-alive connections with pipelining, from ``wrk`` when it is on PATH (C, its own process),
else from an asyncio client in this process. Every server is pinned to the same CPU and wrk
(and this process) to another (``--no-pin`` to leave placement to the kernel), so that both
servers see the same placement. Each round loads the servers one after the other ("apart",
in the order ABC, CBA, BCA, ACB, ...: each server in each position equally often, each round
mirrored by the next), then all at once ("together": sharing their CPU, every server meets the
same interference at the same moment, and its requests/s follows its CPU cost per request).
Per server: requests/s and server CPU per request (the kernel's per-process CPU clock, all
threads); ratios are medians of per-round ratios, with their quartiles; plus each server's
garbage collections during the rounds (``gc.callbacks`` in the server, read from its
``/_bench/gc`` route).

Then, unless ``--no-callgrind`` (or valgrind is missing), the same three servers run under
valgrind's callgrind and serve a fixed number of requests: instructions executed per request,
which other processes on the machine do not change, as a repeatable complement.

Numbers only: nothing here asserts a timing. Targets: <= 10 us added per request, and the gated
route serving >= 95% of the ungated route's requests per second.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent / "adapters"))

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from bench._common import build_catalog, build_company
from syncd_asgi import EntitlementMiddleware, GateRule, Replica, header_identity, requires_feature

FLAG = "feature-0"  # boolean, granted on the pro plan every company is on
N_COMPANIES = 1000
ASGI = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def replica() -> Replica:
    catalog = build_catalog()
    companies = [build_company(catalog, n) for n in range(N_COMPANIES)]
    rep = Replica(loader=lambda: (catalog.flags, companies, []))
    rep.start()
    return rep


async def bare(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


async def endpoint(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def gated_endpoint(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


requires_feature(FLAG)(gated_endpoint)


def apps(rep: Replica) -> dict[str, tuple[ASGI, str]]:
    ident = header_identity("x-customer", "stripe_customer_id")
    routes = [Route("/ungated", endpoint), Route("/gated", gated_endpoint)]
    with_mw = Starlette(
        routes=routes, middleware=[Middleware(EntitlementMiddleware, replica=rep, identify=ident)]
    )
    without = Starlette(routes=routes)
    bare_gated = EntitlementMiddleware(bare, rep, ident, rules=[GateRule.of("/gated", FLAG)])
    return {
        "bare app": (bare, "/gated"),
        "bare app + middleware, gated": (bare_gated, "/gated"),
        "starlette, no middleware": (without, "/gated"),  # the same route, not gated
        "starlette, no middleware, /ungated": (without, "/ungated"),
        "starlette + middleware, ungated route": (with_mw, "/ungated"),
        "starlette + middleware, gated route": (with_mw, "/gated"),
    }


# --- served apps (uvicorn factories) ---------------------------------------------------------
# Every served app also has /_bench/gc: the collections its process made so far, by generation
# (count, seconds), timed with gc.callbacks; the same route in every app.
_gc_totals: dict[str, list[float]] = {"collections": [0, 0, 0], "seconds": [0.0, 0.0, 0.0]}
_gc_started = [0.0]


def _on_gc(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        _gc_started[0] = time.perf_counter()
        return
    gen = info["generation"]
    _gc_totals["collections"][gen] += 1
    _gc_totals["seconds"][gen] += time.perf_counter() - _gc_started[0]


async def gc_stats(request: Request) -> JSONResponse:
    return JSONResponse(_gc_totals)


def _served_routes() -> list[BaseRoute]:
    if _on_gc not in gc.callbacks:
        gc.callbacks.append(_on_gc)
    return [Route("/ungated", endpoint), Route("/gated", gated_endpoint), Route("/_bench/gc", gc_stats)]


def make_plain_app() -> Starlette:
    """uvicorn factory: the same routes without the middleware."""
    return Starlette(routes=_served_routes())


def make_plain_app_with_data() -> Starlette:
    """uvicorn factory: no middleware, but the replica's data loaded in memory (a control)."""
    global _held
    _held = replica()
    return make_plain_app()


_held: Replica | None = None


def make_gated_app() -> Starlette:
    """uvicorn factory: the same routes behind the middleware; /gated is gated (decorator)."""
    ident = header_identity("x-customer", "stripe_customer_id")
    mw = Middleware(EntitlementMiddleware, replica=replica(), identify=ident)
    return Starlette(routes=_served_routes(), middleware=[mw])


def scope_for(path: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"api.example.com"),
            (b"user-agent", b"bench"),
            (b"accept", b"*/*"),
            (b"x-customer", b"cus_42"),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def run(app: ASGI, path: str, n: int) -> float:
    """CPU seconds per request over n requests (a fresh scope each, as a server gives)."""
    base = scope_for(path)
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    copy = base.copy
    # CPU time of this process, not wall time: on a shared machine the wall clock also counts
    # the time other processes hold the CPU, which swamps differences of a few microseconds.
    t0 = time.process_time()
    for _ in range(n):
        await app(copy(), receive, send)
    elapsed = time.process_time() - t0
    if set(statuses) != {200}:
        raise SystemExit(f"{path}: unexpected statuses {set(statuses)}")
    return elapsed / n


async def measure(rounds: int, n: int) -> dict[str, float]:
    cases = apps(replica())
    for app, path in cases.values():  # warm up: route cache, snapshots, imports
        await run(app, path, 200)
    samples: dict[str, list[float]] = {name: [] for name in cases}
    gc.collect()
    gc.disable()
    try:
        for _ in range(rounds):
            for name, (app, path) in cases.items():
                samples[name].append(await run(app, path, n))
    finally:
        gc.enable()
    return {name: statistics.median(values) * 1e6 for name, values in samples.items()}


# --- served: uvicorn processes, load from wrk ------------------------------------------------
ROOT = Path(__file__).resolve().parent.parent
REQUEST = b"GET {path} HTTP/1.1\r\nhost: bench\r\nx-customer: cus_42\r\n\r\n"
NAMES = {
    "plain": "same route, no middleware",
    "gated": "same route, gated",
    "again": "no middleware, second server (A/A)",
    "control": "no middleware, replica loaded",
}


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def placement() -> tuple[list[str], list[str]]:
    """Command prefixes pinning (servers, load generator) to CPUs: every server on the same
    (last) CPU, so each sees the same placement; wrk and this process on the first."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2 or shutil.which("taskset") is None:
        return [], []
    return ["taskset", "-c", str(cpus[-1])], ["taskset", "-c", str(cpus[0])]


def start_server(factory: str, prefix: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    cmd = [*prefix, sys.executable, "-m", "uvicorn", f"bench.bench_middleware:{factory}", "--factory"]
    cmd += ["--port", str(port), "--log-level", "warning", "--no-access-log"]
    # Both roots on the path: this checkout's syncd and syncd_asgi, whatever else is installed.
    path = os.pathsep.join([str(ROOT), str(ROOT / "adapters")])
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": path})
    return proc, port


async def _wait_up(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def _one_connection(port: int, path: str, keep_going: Callable[[int], int], depth: int) -> int:
    """Pipelined batches on one keep-alive connection while ``keep_going(done)`` returns a batch
    size > 0; returns the requests answered."""
    request = REQUEST.replace(b"{path}", path.encode())
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    size = len(head) + length  # every response is the same size (fixed-width Date header)
    await reader.readexactly(length)
    done = 1
    while (batch := min(depth, keep_going(done))) > 0:
        writer.write(request * batch)
        data = await reader.readexactly(size * batch)
        if not data.startswith(b"HTTP/1.1 200"):
            raise SystemExit(f"{path}: unexpected response {data[:40]!r}")
        done += batch
    writer.close()
    return done


async def load(port: int, path: str, seconds: float, conns: int = 8, depth: int = 16) -> tuple[int, float]:
    """(requests, seconds) over ``conns`` keep-alive connections, ``depth`` pipelined requests each."""
    stop = time.monotonic() + seconds
    t0 = time.monotonic()
    counts = await asyncio.gather(
        *(
            _one_connection(port, path, lambda _: depth if time.monotonic() < stop else 0, depth)
            for _ in range(conns)
        )
    )
    return sum(counts), time.monotonic() - t0


async def load_fixed(port: int, path: str, n: int, conns: int = 8, depth: int = 16) -> int:
    """Exactly ``n`` requests (rounded to a multiple of ``conns``), pipelined as ``load``."""
    each = max(1, n // conns)
    counts = await asyncio.gather(
        *(_one_connection(port, path, lambda done: each - done, depth) for _ in range(conns))
    )
    return sum(counts)


WRK_SCRIPT = """
init = function(args)
  local one = wrk.format("GET", args[1], {["x-customer"] = "cus_42"})
  batch = string.rep(one, tonumber(args[2]))
end
request = function()
  return batch
end
"""


def load_wrk(
    port: int, path: str, seconds: float, prefix: list[str], conns: int = 8, depth: int = 16
) -> tuple[int, float]:
    """Requests/s driven by wrk (C, one thread, so the client costs the server's core little):
    ``conns`` keep-alive connections, ``depth`` pipelined requests each, as ``load``."""
    with tempfile.TemporaryDirectory(prefix="syncd-wrk-") as tmp:
        script = Path(tmp) / "pipeline.lua"
        script.write_text(WRK_SCRIPT)
        argv = [*prefix, "wrk", "-t1", f"-c{conns}", f"-d{seconds:g}s", "-s", str(script)]
        argv += [f"http://127.0.0.1:{port}", "--", path, str(depth)]
        out = subprocess.run(argv, capture_output=True, check=True, text=True).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise SystemExit(f"{path}: wrk saw errors:\n{out}")
    requests = int(out.split(" requests in ")[0].rsplit("\n", 1)[-1].strip())
    elapsed = out.split(" requests in ")[1].split(",")[0]
    return requests, _seconds(elapsed)


def _seconds(text: str) -> float:
    for unit, factor in (("ms", 0.001), ("us", 1e-6), ("m", 60.0), ("s", 1.0)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * factor
    return float(text)


def cpu_seconds(pid: int) -> float:
    """CPU time a process (all its threads) has used so far.

    From the kernel's per-process CPU clock (nanoseconds), as /proc's user + system time
    counts in clock ticks (10 ms): 0.5-1% of a 2 s round. Falls back to /proc.
    """
    clock = ctypes.c_int()
    if _libc.clock_getcpuclockid(pid, ctypes.byref(clock)) == 0:
        try:
            return time.clock_gettime(clock.value)
        except OSError:
            pass
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


_libc = ctypes.CDLL(None, use_errno=True)


def gc_totals(port: int) -> dict[str, list[float]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_bench/gc", timeout=30) as response:
        found: dict[str, list[float]] = json.load(response)
    return found


@dataclass
class Served:
    """One server's rounds: requests/s seen by the load generator, server CPU us/request, and
    the collections its process made during the rounds (by generation)."""

    rates: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)
    requests: int = 0
    gc_requests: int = 0  # requests served while the collections below were counted
    gc_count: list[float] = field(default_factory=lambda: [0, 0, 0])
    gc_seconds: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])

    @property
    def rate(self) -> float:
        return statistics.median(self.rates)

    @property
    def cpu(self) -> float:
        return statistics.median(self.cpu_us)


def round_order(names: list[str], r: int) -> list[str]:
    """ABC, CBA, BCA, ACB, CAB, BAC, ...: each server in each position equally often, and each
    forward round followed by its mirror (ABBA), so a linear drift in load cancels out."""
    k = (r // 2) % len(names)
    base = names[k:] + names[:k]
    return base if r % 2 == 0 else base[::-1]


async def measure_uvicorn(
    rounds: int, seconds: float, client: str, factories: dict[str, str], pin: bool = True
) -> tuple[dict[str, Served], dict[str, Served]]:
    """Serve each factory with its own uvicorn process; each round loads them one after the
    other (``round_order``: "apart"), then all at once ("together": on one pinned CPU they
    share it, so every server meets the same interference at the same moment and its
    requests/s follows its CPU cost per request). Returns (apart, together); the collections
    are counted on the "apart" results, over both kinds of rounds."""
    server_prefix, load_prefix = placement() if pin else ([], [])
    if load_prefix:
        # This process (and the threads it starts from now on) beside wrk, off the servers' CPU.
        os.sched_setaffinity(0, {int(load_prefix[-1])})
    servers = {name: start_server(factory, server_prefix) for name, factory in factories.items()}
    try:
        for _, port in servers.values():
            await _wait_up(port)

        async def drive(port: int, duration: float) -> tuple[int, float]:
            if client == "wrk":
                return await asyncio.to_thread(load_wrk, port, "/gated", duration, load_prefix)
            return await load(port, "/gated", duration)

        for _, port in servers.values():
            await drive(port, 1.0)  # warm up
        results = {name: Served() for name in servers}
        together = {name: Served() for name in servers}
        gc_before = {name: await asyncio.to_thread(gc_totals, port) for name, (_, port) in servers.items()}

        async def one(name: str, into: dict[str, Served]) -> None:
            proc, port = servers[name]
            before = cpu_seconds(proc.pid)
            requests, elapsed = await drive(port, seconds)
            result = into[name]
            result.rates.append(requests / elapsed)
            result.cpu_us.append((cpu_seconds(proc.pid) - before) / requests * 1e6)
            result.requests += requests
            results[name].gc_requests += requests

        for r in range(rounds):
            for name in round_order(list(servers), r):
                await one(name, results)
            await asyncio.gather(*(one(name, together) for name in servers))
        for name, (_, port) in servers.items():
            after = await asyncio.to_thread(gc_totals, port)
            for gen in range(3):
                results[name].gc_count[gen] = after["collections"][gen] - gc_before[name]["collections"][gen]
                results[name].gc_seconds[gen] = after["seconds"][gen] - gc_before[name]["seconds"][gen]
        return results, together
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(10)
        if load_prefix:
            os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))


# --- instructions per request under callgrind -------------------------------------------------
def _callgrind(args: list[str]) -> None:
    subprocess.run(["callgrind_control", *args], check=True, capture_output=True)


async def measure_instructions(n: int, repeats: int, factories: dict[str, str]) -> dict[str, list[float]]:
    """Instructions each server executes per request (all threads), counted by valgrind's
    callgrind over exactly ``n`` pipelined requests, ``repeats`` times per server.

    A count of executed instructions does not depend on what else runs on the machine, so it is
    the repeatable complement to the timed rounds (it does not see cache misses or stalls).
    The servers start with instrumentation off (fast) and it is switched on after start-up.
    """
    with tempfile.TemporaryDirectory(prefix="syncd-callgrind-") as tmp:
        servers: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
        for name, factory in factories.items():
            prefix = ["valgrind", "--tool=callgrind", "--instr-atstart=no"]
            prefix += [f"--callgrind-out-file={tmp}/{name}.out", f"--log-file={tmp}/{name}.log"]
            servers[name] = start_server(factory, prefix)
        try:
            for _, port in servers.values():
                await _wait_up(port, timeout=300)
            for proc, port in servers.values():
                _callgrind(["-i", "on", str(proc.pid)])
                await load_fixed(port, "/gated", 400)  # warm up under instrumentation
            per_request: dict[str, list[float]] = {name: [] for name in servers}
            dumps = dict.fromkeys(servers, 0)
            for r in range(repeats):
                for name in round_order(list(servers), r):
                    proc, port = servers[name]
                    _callgrind(["-z", str(proc.pid)])
                    done = await load_fixed(port, "/gated", n)
                    _callgrind(["-d", str(proc.pid)])
                    dumps[name] += 1
                    text = Path(f"{tmp}/{name}.out.{dumps[name]}").read_text()
                    totals = next(
                        line for line in text.splitlines() if line.startswith(("totals:", "summary:"))
                    )
                    per_request[name].append(int(totals.split()[1]) / done)
            return per_request
        finally:
            for proc, _ in servers.values():
                proc.terminate()
                proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--uvicorn", action="store_true", help="also measure over HTTP with uvicorn")
    parser.add_argument(
        "--client",
        choices=("wrk", "python"),
        default="wrk" if shutil.which("wrk") else "python",
        help="load generator for --uvicorn: wrk (C, its own process; apt-get install wrk) or asyncio here",
    )
    parser.add_argument(
        "--control",
        action="store_true",
        help="with --uvicorn, also serve the app without middleware but with the replica loaded",
    )
    parser.add_argument(
        "--no-pin", action="store_true", help="with --uvicorn, do not pin servers and wrk to CPUs"
    )
    parser.add_argument(
        "--no-callgrind",
        action="store_true",
        help="with --uvicorn, skip the instruction counts under valgrind's callgrind",
    )
    args = parser.parse_args()
    rounds, n = (5, 2000) if args.quick else (15, 10_000)
    us = asyncio.run(measure(rounds, n))
    print(f"{'case (CPU time per request, median of rounds)':46} {'us/request':>11} {'requests/s':>11}")
    for name, value in us.items():
        print(f"{name:46} {value:11.2f} {1e6 / value:11,.0f}")
    mw_only = us["bare app + middleware, gated"] - us["bare app"]
    added = us["starlette + middleware, gated route"] - us["starlette, no middleware"]
    ratio = us["starlette, no middleware"] / us["starlette + middleware, gated route"]
    passthrough = us["starlette + middleware, ungated route"] - us["starlette, no middleware, /ungated"]
    print()
    print(
        f"middleware alone, gated decision (bare app):        {mw_only:6.2f} us/request   (target <= 10 us)"
    )
    print(f"added to a Starlette route by gating it:            {added:6.2f} us/request   (target <= 10 us)")
    print(f"added to an ungated route (pass-through):           {passthrough:6.2f} us/request")
    print(f"gated route requests/s vs same route ungated:       {ratio:6.1%}            (target >= 95%)")
    if args.uvicorn:
        uvicorn_report(args.quick, args.client, args.control, not args.no_pin)
        if not args.no_callgrind and shutil.which("valgrind") and shutil.which("callgrind_control"):
            instructions_report(args.quick)


def uvicorn_report(quick: bool, client: str, control: bool, pin: bool) -> None:
    # "again": a second server of the same plain app, an A/A pair: how far two identical servers
    # measured this way differ in this run.
    factories = {"plain": "make_plain_app", "gated": "make_gated_app", "again": "make_plain_app"}
    if control:
        factories["control"] = "make_plain_app_with_data"
    rounds, seconds = (4, 1.0) if quick else (16, 2.0)
    apart, together = asyncio.run(measure_uvicorn(rounds, seconds, client, factories, pin))
    where = "servers pinned to one CPU, load to the other" if pin and placement()[0] else "not pinned"
    print()
    print(
        f"uvicorn, 1 worker each, HTTP/1.1 keep-alive, 8 connections x 16 pipelined requests, load from "
        f"{client}; {where}; {rounds} rounds of {seconds:g} s per server; ratios are medians of "
        "per-round ratios [quartiles]; >= 95% is the target"
    )
    print("- apart: the servers loaded one after the other, order ABC CBA BCA ACB ...")
    served_block(apart, "")
    print("- together: all servers loaded at once, sharing their CPU")
    served_block(together, "together, ")
    print("  garbage collections during all rounds (gen0 / gen1 / gen2 count; time per request):")
    for key, result in apart.items():
        counts = " / ".join(f"{c:.0f}" for c in result.gc_count)
        full = result.gc_seconds[2] / max(1, result.gc_requests) * 1e6
        every = sum(result.gc_seconds) / max(1, result.gc_requests) * 1e6
        print(f"    {NAMES[key]:36} {counts:>16}   gen2 {full:.2f} us, all generations {every:.2f} us")


def served_block(served: dict[str, Served], label: str) -> None:
    plain, gated, again = served["plain"], served["gated"], served["again"]
    print(
        f"  {'median (min) of rounds':36} {'requests/s':>11} {'server CPU us/request':>22} {'capacity/s':>11}"
    )
    for key, result in served.items():
        cpu = f"{result.cpu:8.1f} ({min(result.cpu_us):.1f})"
        print(f"  {NAMES[key]:36} {result.rate:11,.0f} {cpu:>22} {1e6 / result.cpu:11,.0f}")
    for key, result in served.items():
        print(f"    {key:8} CPU us/request by round: " + " ".join(f"{c:.1f}" for c in result.cpu_us))
    print(f"  gated vs ungated, {label}requests/s as measured:   {spread(gated.rates, plain.rates)}")
    print(f"  gated vs ungated, {label}capacity from server CPU: {spread(plain.cpu_us, gated.cpu_us)}")
    print(f"  A/A, {label}requests/s as measured:                {spread(again.rates, plain.rates)}")
    print(f"  A/A, {label}capacity from server CPU:              {spread(plain.cpu_us, again.cpu_us)}")
    print(
        f"  (ratios of the medians above: requests/s {gated.rate / plain.rate:.1%}, CPU "
        f"{plain.cpu / gated.cpu:.1%}; gated adds {gated.cpu - plain.cpu:.1f} us of server CPU per request)"
    )


def instructions_report(quick: bool) -> None:
    factories = {"plain": "make_plain_app", "gated": "make_gated_app", "again": "make_plain_app"}
    n, repeats = (800, 2) if quick else (2000, 4)
    counts = asyncio.run(measure_instructions(n, repeats, factories))
    print()
    print(
        f"callgrind: instructions each server executes per request (all threads), {n} requests "
        f"x {repeats} repeats, same load as above; independent of the machine's load:"
    )
    for key, values in counts.items():
        low, high = min(values), max(values)
        print(f"  {NAMES[key]:36} {statistics.median(values):9,.0f} per request  ({low:,.0f}-{high:,.0f})")
    plain, gated, again = (statistics.median(counts[k]) for k in ("plain", "gated", "again"))
    print(f"  gated vs ungated, capacity from instructions: {plain / gated:6.1%}   (target >= 95%)")
    print(f"  A/A, capacity from instructions:              {plain / again:6.1%}")
    print(f"  (gated adds {gated - plain:,.0f} instructions per request)")


def spread(numerators: list[float], denominators: list[float]) -> str:
    ratios = [n / d for n, d in zip(numerators, denominators, strict=True)]
    if len(ratios) < 2:
        return f"{ratios[0]:6.1%}"
    q1, _, q3 = statistics.quantiles(ratios, n=4)
    return f"{statistics.median(ratios):6.1%}   [{q1:.1%} - {q3:.1%}]"


if __name__ == "__main__":
    main()
