"""Benchmark the entitlement middleware's per-request cost, in process.

    python bench/bench_middleware.py [--quick]

Requests are driven straight through the ASGI callable (no server, no sockets), so the
middleware's cost is not hidden behind network and HTTP parsing. Measured in the same run,
interleaved in rounds (median of rounds reported):

- a bare ASGI app, alone and behind the middleware with a config gate (the middleware alone);
- a Starlette app: the route without the middleware (baseline), the same route ungated behind
  the middleware (pass-through), and the same endpoint gated (decorator; an allowed company on
  a 20-flag catalog, identified by header, decided from the replica's compiled snapshot).

With ``--uvicorn``, the same two Starlette apps (without the middleware; with it, gated route)
are also served by real uvicorn processes (1 worker each) and loaded over HTTP/1.1 keep-alive
connections with pipelining from this process, rounds interleaved; requests/s compared.

Numbers only: nothing here asserts a timing. Targets: <= 10 us added per request, and the gated
route serving >= 95% of the ungated route's requests per second.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
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


def make_plain_app() -> Starlette:
    """uvicorn factory: the same routes without the middleware."""
    return Starlette(routes=[Route("/ungated", endpoint), Route("/gated", gated_endpoint)])


def make_plain_app_with_data() -> Starlette:
    """uvicorn factory: no middleware, but the replica's data loaded in memory (a control)."""
    global _held
    _held = replica()
    return make_plain_app()


_held: Replica | None = None


def make_gated_app() -> Starlette:
    """uvicorn factory: the same endpoint gated, behind the middleware."""
    return apps(replica())["starlette + middleware, gated route"][0]  # type: ignore[return-value]


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


ROOT = Path(__file__).resolve().parent.parent
REQUEST = b"GET {path} HTTP/1.1\r\nhost: bench\r\nx-customer: cus_42\r\n\r\n"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(factory: str) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    cmd = [sys.executable, "-m", "uvicorn", f"bench.bench_middleware:{factory}", "--factory"]
    cmd += ["--port", str(port), "--log-level", "warning", "--no-access-log"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
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


async def load(port: int, path: str, seconds: float, conns: int = 8, depth: int = 16) -> float:
    """Requests/s over ``conns`` keep-alive connections, ``depth`` pipelined requests each."""
    request = REQUEST.replace(b"{path}", path.encode())
    stop = time.monotonic() + seconds
    done = 0

    async def one() -> None:
        nonlocal done
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        size = len(head) + length  # every response is the same size (fixed-width Date header)
        await reader.readexactly(length)
        batch = request * depth
        while time.monotonic() < stop:
            writer.write(batch)
            data = await reader.readexactly(size * depth)
            if not data.startswith(b"HTTP/1.1 200"):
                raise SystemExit(f"{path}: unexpected response {data[:40]!r}")
            done += depth
        writer.close()

    t0 = time.monotonic()
    await asyncio.gather(*(one() for _ in range(conns)))
    return done / (time.monotonic() - t0)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure_uvicorn(rounds: int, seconds: float) -> dict[str, tuple[float, float, float]]:
    """Per server: (requests/s seen by the client, server CPU us/request min and median)."""
    servers = {"plain": start_server("make_plain_app"), "gated": start_server("make_gated_app")}
    try:
        for _, port in servers.values():
            await _wait_up(port)
        paths = {"plain": "/gated", "gated": "/gated"}
        for name, (_, port) in servers.items():
            await load(port, paths[name], 0.5)  # warm up
        rates: dict[str, list[float]] = {name: [] for name in servers}
        cpu: dict[str, list[float]] = {name: [] for name in servers}
        order = list(servers.items())
        for _ in range(rounds):
            order.reverse()  # alternate who goes first, so drift in machine load evens out
            for name, (proc, port) in order:
                before = cpu_seconds(proc.pid)
                t0 = time.monotonic()
                rate = await load(port, paths[name], seconds)
                requests = rate * (time.monotonic() - t0)
                rates[name].append(rate)
                cpu[name].append((cpu_seconds(proc.pid) - before) / requests * 1e6)
        # Server CPU per request: the least-disturbed round (min) is the intrinsic cost on a
        # shared machine; the median is printed alongside.
        return {
            name: (statistics.median(rates[name]), min(cpu[name]), statistics.median(cpu[name]))
            for name in servers
        }
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--uvicorn", action="store_true", help="also measure over HTTP with uvicorn")
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
        rps = asyncio.run(measure_uvicorn(3 if args.quick else 10, 1.0 if args.quick else 2.0))
        print()
        (plain_rps, plain_cpu, _), (gated_rps, gated_cpu, _) = rps["plain"], rps["gated"]
        print("uvicorn, 1 worker each, HTTP/1.1 keep-alive, 8 connections x 16 pipelined requests:")
        print(f"{'':28} {'requests/s':>11} {'server CPU us/req min / median':>31} {'capacity/s':>11}")
        for name, (r, c, med) in (
            ("same route, no middleware", rps["plain"]),
            ("same route, gated", rps["gated"]),
        ):
            print(f"  {name:26} {r:11,.0f} {c:18.1f} / {med:10.1f} {1e6 / c:11,.0f}")
        print(f"  gated vs ungated, requests/s as measured:   {gated_rps / plain_rps:6.1%}   (target >= 95%)")
        print(f"  gated vs ungated, capacity from server CPU: {plain_cpu / gated_cpu:6.1%}   (target >= 95%)")


if __name__ == "__main__":
    main()
