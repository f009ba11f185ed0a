"""Benchmark outbound webhook delivery: deliveries per second to a local receiver.

    python bench/bench_webhooks.py [--deliveries 5000] [--companies 500] [--database-url URL]

Publishes DELIVERIES change-log events (COMPANIES companies, so per-company ordering is in
play) to one endpoint, then times the delivery worker's rounds (claim, sign, POST, record)
until every delivery has succeeded. The receiver is a separate uvicorn process that
verifies every signature with ``standardwebhooks``. Target: >= 500 deliveries/s.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from sqlalchemy import Engine

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from syncd import migrate
from syncd.db import make_engine, session_scope
from syncd.hookspecs import Change
from syncd.models import utcnow
from syncd.services import webhooks
from syncd.webhooks_out.config import WebhookSettings
from syncd.webhooks_out.delivery import Sender, deliver_round
from syncd.webhooks_out.enqueue import publish

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_receiver(secret: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(HERE / "_webhook_receiver.py"), str(port), secret])
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            httpx.get(f"{base}/count", timeout=1)
            return proc, base
        except httpx.TransportError:
            if time.monotonic() > deadline:
                proc.kill()
                raise SystemExit("receiver did not start") from None
            time.sleep(0.05)


def deliver_all(engine: Engine, config: WebhookSettings, total: int) -> tuple[float, float, int]:
    """Rounds until ``total`` attempts; returns (wall seconds, CPU seconds of this process, attempts)."""
    attempts = 0
    with Sender(config) as sender:
        started, cpu = time.perf_counter(), time.process_time()
        while attempts < total:
            made = deliver_round(engine, sender)
            if not made:
                break
            attempts += made
        return time.perf_counter() - started, time.process_time() - cpu, attempts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=5000)
    parser.add_argument("--companies", type=int, default=500)
    parser.add_argument("--database-url", default=None, help="default: a temporary SQLite file")
    parser.add_argument("--concurrency", type=int, default=WebhookSettings().concurrency)
    args = parser.parse_args()

    tmp = tempfile.TemporaryDirectory()
    url = args.database_url or f"sqlite:///{tmp.name}/bench.db"
    engine = make_engine(url)
    backend = engine.url.get_backend_name()
    migrate.upgrade(engine)
    config = WebhookSettings(concurrency=args.concurrency)
    with session_scope(engine) as session:
        endpoint = webhooks.create_webhook(
            session, name="bench", url="http://placeholder", request_types=["company.updated"]
        )
        secret, endpoint_id = endpoint.secret, endpoint.id
    receiver, base = start_receiver(secret)
    try:
        with session_scope(engine) as session:
            webhooks.update_webhook(session, endpoint_id, changes={"url": f"{base}/hook"})
        now = utcnow()
        changes = [
            Change(
                i + 1,
                "company.updated",
                f"comp_{i % args.companies}",
                now,
                {"body": {"n": i, "pad": "x" * 400}},
            )
            for i in range(args.deliveries)
        ]
        t0 = time.perf_counter()
        with session_scope(engine) as session:
            created = publish(session, changes, now)
        enqueue_s = time.perf_counter() - t0
        elapsed, cpu, attempts = deliver_all(engine, config, created)
        counts = httpx.get(f"{base}/count", timeout=5).json()
    finally:
        receiver.terminate()
        receiver.wait(10)
        engine.dispose()
        tmp.cleanup()
    print(f"backend: {backend}; {created} deliveries, {args.companies} companies, 1 endpoint")
    print(f"enqueue (publish one batch): {enqueue_s:.2f} s ({created / enqueue_s:,.0f}/s)")
    per = cpu / attempts * 1e3
    threads = config.concurrency
    print(f"deliver: {attempts} attempts in {elapsed:.2f} s ({threads} threads), {per:.2f} ms CPU each")
    print(f"receiver: {counts['ok']} verified, {counts['bad']} bad signatures")
    rate = counts["ok"] / elapsed
    print(f"throughput: {rate:,.0f} deliveries/s (target >= 500: {'met' if rate >= 500 else 'NOT met'})")


if __name__ == "__main__":
    main()
