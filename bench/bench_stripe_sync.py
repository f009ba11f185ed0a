"""Benchmark Stripe -> syncd on Postgres.

    python bench/bench_stripe_sync.py [--quick] [--postgres URL]

0. Intake alone: signed webhook POSTs (verify, group-commit into the inbox, 2xx) with the
   applier off; events/s = events / (first POST -> all stored). The unpaced runs use wrk
   (``apt-get install wrk``; 2 threads, 32 connections) when installed, else the lean client in
   ``_loadgen`` (pre-rendered requests, one thread, 32 connections): Python's http.client costs
   several times its CPU, which on a small machine is CPU taken from the daemon.
1. Throughput end to end: the same POSTs to a serving daemon, each applied right after the
   answer (mirror, company, plans, change_log).
   Events/s = events / (first POST -> last event applied).
2. Latency at a steady 200 events/s: receipt -> applied (inbox ``received_at`` ->
   ``applied_at``), p50/p99, and the same from the client's send time; then receipt -> the
   change published: the Redis adapter (``--redis``, on by default) publishing as in
   `syncd run`, woken by each change-log commit, an event counting as published when every
   change-log row of its applying transaction has been written to Redis. During both runs the
   adapter publishes every change, so the end-to-end rate includes that work.

``--workers 0`` (default) serves from a thread of this process; ``--workers N`` runs
``syncd run`` with ``[server] workers = N`` in its own processes, as in production.
3. Full sweep: pages of listed customers and subscriptions applied locally (mirror + company
   + plan mapping, one transaction per 1,000-object page), objects/s and peak RSS.

Event mix: per customer ``customer.created``, ``customer.subscription.created`` (Pro) and
``customer.subscription.updated`` (quantity), as webhooks with current-API payloads. Events and
listed objects carry copies of a customer and a subscription the built-in emulator renders in
full (``_stripe_objects``, ~3 KB a subscription; ``--objects trimmed``: only the fields syncd
reads). Objects are not re-fetched from Stripe (``SYNCD_STRIPE_REFETCH=""``): this measures
syncd, not Stripe's rate limit. Numbers only: nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import http.client
import json
import multiprocessing
import os
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import uvicorn
from sqlalchemy import create_engine, func, text
from sqlalchemy import event as sa_event
from sqlalchemy.engine import Connection
from sqlmodel import Session, col, select

from bench import _loadgen
from bench._stripe_objects import StripeShapes
from syncd import jobs
from syncd.api import create_app
from syncd.catalog import apply_catalog, loads
from syncd.config import load_settings
from syncd.daemon import Daemon
from syncd.db import session_scope
from syncd.log import configure_logging
from syncd.models import ChangeLog, InboxEvent, utcnow
from syncd.stripe_sync.applier_process import uses_process
from syncd.stripe_sync.apply import ApplyOptions, apply_pending
from syncd.stripe_sync.inbox import store_event
from syncd.stripe_sync.planner_stats import PlannerStats
from syncd.stripe_sync.sweep import PAGE_SIZE, link_customers, page_pool
from syncd.stripe_sync.sweep_pool import SweepResult

SECRET = "whsec_bench"  # noqa: S105 (a throwaway local webhook secret)
PRODUCT, PRICE = "prod_bench_pro", "price_bench_pro_month"
CATALOG = f"""
[settings]
initial_plan = "free"
[[plans]]
key = "free"
name = "Free"
[[plans]]
key = "pro"
name = "Pro"
stripe_product = "{PRODUCT}"
prices = {{ month = 4900 }}
"""


@contextmanager
def fresh_database(admin_url: str) -> Iterator[str]:
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"syncd_bench_{secrets.token_hex(4)}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def subscription(n: int, created: int, quantity: int) -> dict[str, Any]:
    item = {
        "id": f"si_{n}",
        "object": "subscription_item",
        "price": {"id": PRICE, "object": "price", "product": PRODUCT, "recurring": {"interval": "month"}},
        "quantity": quantity,
        "current_period_start": created,
        "current_period_end": created + 30 * 86_400,
    }
    return {
        "id": f"sub_{n}",
        "object": "subscription",
        "customer": f"cus_{n}",
        "status": "active",
        "created": created,
        "cancel_at_period_end": False,
        "items": {"object": "list", "data": [item], "has_more": False},
    }


def events(count: int, prefix: str) -> list[dict[str, Any]]:
    now = int(time.time())
    out: list[dict[str, Any]] = []
    for n in range(count // 3 + 1):
        cid = f"{prefix}{n}"
        objects = [
            ("customer.created", customer_for(cid, f"Company {cid}")),
            ("customer.subscription.created", subscription_for(cid, now, 1)),
            ("customer.subscription.updated", subscription_for(cid, now, 2)),
        ]
        for k, (etype, obj) in enumerate(objects):
            out.append(
                {
                    "id": f"evt_{cid}_{k}",
                    "object": "event",
                    "type": etype,
                    "api_version": "2026-10-28.endive",
                    "created": now + k,
                    "livemode": False,
                    "data": {"object": obj},
                    "request": {"id": None, "idempotency_key": None},
                }
            )
    return out[:count]


# Objects as Stripe sends them (``--objects stripe``, the default) or trimmed to what syncd
# reads: set by :func:`use_objects`.
SHAPES: list[StripeShapes | None] = [None]


def use_objects(objects: str, created: int | None = None) -> None:
    """``stripe``: events and listed pages carry copies of emulator-rendered objects (~3 KB a
    subscription); ``trimmed``: the few fields syncd reads (the lower bound of the work)."""
    SHAPES[0] = StripeShapes(PRODUCT, PRICE, created or int(time.time())) if objects == "stripe" else None


def customer_for(cid: str, name: str) -> dict[str, Any]:
    shapes = SHAPES[0]
    if shapes is not None:
        return shapes.customer(cid, name)
    return {"id": f"cus_{cid}", "object": "customer", "name": name}


def subscription_for(cid: str, now: int, quantity: int) -> dict[str, Any]:
    shapes = SHAPES[0]
    if shapes is not None:
        return shapes.subscription(cid, quantity)
    sub = subscription(0, now, quantity)
    sub["id"], sub["customer"] = f"sub_{cid}", f"cus_{cid}"
    sub["items"]["data"][0]["id"] = f"si_{cid}"
    return sub


def signed(event: dict[str, Any]) -> tuple[bytes, str]:
    body = json.dumps(event, separators=(",", ":")).encode()
    t = int(time.time())
    mac = hmac.new(SECRET.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return body, f"t={t},v1={mac}"


APPLIER = ["auto"]  # [stripe] applier for the serving daemons (--applier)
CONNECTIONS = [32]  # the lean client's connections in the unpaced runs
CLIENT_CPU_S = [0.0]  # the lean client's CPU per request in its last run
CLIENT = ["python"]  # the Python load generator: "python" (bench._loadgen) or "httpclient"


class Server:
    """A prepared daemon serving its HTTP app on loopback, with the inbox kick enabled."""

    def __init__(self, database_url: str, data_dir: str, *, apply: bool = True, redis_url: str = "") -> None:
        self.redis_prefix = f"bench{secrets.token_hex(4)}"
        settings = load_settings(
            None,
            environ={
                "SYNCD_DATA_DIR": data_dir,
                "SYNCD_DATABASE_URL": database_url,
                "SYNCD_DATABASE_POOL_SIZE": "20",
                "SYNCD_CATALOG_PATH": "",
                "SYNCD_STRIPE_API_KEY": "sk_test_bench",
                "SYNCD_STRIPE_WEBHOOK_SECRET": SECRET,
                "SYNCD_STRIPE_REFETCH": "",
                "SYNCD_STRIPE_APPLIER": APPLIER[0],
                "SYNCD_LOG_LEVEL": "warning",
                **(
                    {"SYNCD_REDIS_URL": redis_url, "SYNCD_REDIS_KEY_PREFIX": self.redis_prefix}
                    if redis_url
                    else {}
                ),
            },
        )
        configure_logging("warning", "json")
        self._poll: Connection | None = None
        self.redis_url = redis_url
        self.published: dict[int, float] = {}  # change_log id -> when the Redis adapter had written it
        self.daemon = Daemon(settings)
        self.daemon.prepare()
        self.engine = self.daemon.engine
        with session_scope(self.daemon.engine) as session:
            apply_catalog(session, loads(CATALOG))
        if redis_url and apply:
            self._publish_to_redis()
        if apply:  # as in `syncd run`: webhooks kick the inbox applier (or wake its process)
            jobs.set_current_daemon(self.daemon)
            if uses_process(settings):
                self.daemon.start_applier()
                assert self.daemon.applier is not None and self.daemon.applier.wait_ready(60)
        from syncd.stripe_emulator.server import free_port

        self.port = free_port()
        config = uvicorn.Config(
            create_app(self.daemon), host="127.0.0.1", port=self.port, log_level="warning", access_log=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.01)

    def _publish_to_redis(self) -> None:
        """The Redis adapter publishing as in `syncd run` (woken by each change-log commit),
        each change's publication timed when the adapter's write to Redis has returned."""
        pump = self.daemon.publisher
        assert pump is not None and "redis" in pump.adapters
        adapter = pump.adapters["redis"]
        write = adapter.publish
        assert write is not None

        def timed(**kwargs: Any) -> None:
            write(**kwargs)
            at = time.time()
            for change in kwargs["changes"]:
                self.published.setdefault(change.seq, at)

        adapter.publish = timed
        self.daemon.leadership.start()
        pump.start(self.daemon.settings.scheduler.publish_min_gap_s)

    def wait_published(self, timeout: float = 60) -> None:
        """Until the Redis adapter has published every change-log row."""
        with Session(self.engine) as session:
            last = session.exec(select(func.max(ChangeLog.id))).one() or 0
        deadline = time.monotonic() + timeout
        while last not in self.published:
            if time.monotonic() > deadline:
                raise RuntimeError(f"change {last} not published to Redis")
            time.sleep(0.02)

    def stop(self) -> None:
        if self._poll is not None:
            self._poll.close()
        self.server.should_exit = True
        self.thread.join(timeout=30)
        jobs.set_current_daemon(None)
        self.daemon.stop_applier()
        self.daemon.leadership.stop()
        self.daemon.close()
        if self.redis_url:
            import redis

            client = redis.Redis.from_url(self.redis_url)
            for key in client.scan_iter(f"{self.redis_prefix}:*", count=1000):
                client.delete(key)
            client.close()

    def counts(self) -> tuple[int, int]:
        with Session(self.engine) as session:
            pending = session.exec(
                select(func.count()).select_from(InboxEvent).where(col(InboxEvent.status) == "pending")
            ).one()
            total = session.exec(select(func.count()).select_from(InboxEvent)).one()
        return int(pending), int(total)

    def stored(self) -> int:
        """Events in the inbox (one cheap query on a held connection: polled while the daemon
        works, so it should take little of the daemon's CPU)."""
        if self._poll is None:
            self._poll = self.engine.connect()
        count = int(self._poll.execute(text("SELECT count(*) FROM inbox_event")).scalar_one())
        self._poll.rollback()  # a fresh snapshot next time
        return count

    def wait_applied(self, total: int, timeout: float = 600) -> float:
        deadline = time.monotonic() + timeout
        while True:
            pending, stored = self.counts()
            if stored >= total and pending == 0:
                return time.monotonic()
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out: {stored} stored, {pending} pending")
            time.sleep(0.02)


WRK_SCRIPT = r"""
-- Each event is POSTed exactly once: thread k of n sends lines k, k+n, ... of the data file.
-- A connection with nothing left asks for /healthz until its thread has all its answers.
local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end
function init(args)
  local nthreads = tonumber(args[2])
  requests, sent, answered = {}, 0, 0
  local i = 0
  for line in io.lines(args[1]) do
    if i % nthreads == id then
      local sig, body = line:match("^([^\t]*)\t(.*)$")
      requests[#requests + 1] = wrk.format("POST", "/webhooks/stripe",
        {["Stripe-Signature"] = sig, ["Content-Type"] = "application/json"}, body)
    end
    i = i + 1
  end
  filler = wrk.format("GET", "/healthz")
end
function request()
  -- wrk calls thread 0's request() once before connecting, to check it (that one is not sent).
  if id == 0 and not probed then
    probed = true
    return filler
  end
  if sent < #requests then
    sent = sent + 1
    return requests[sent]
  end
  return filler
end
function response(status, headers, body)
  -- /healthz answers 200 without "received": a filler, not one of ours.
  if status == 200 and not body:find('"received"', 1, true) then return end
  answered = answered + 1
  if answered == #requests then wrk.thread:stop() end
end
"""


def post_wrk(
    server: Server, payloads: list[tuple[bytes, str]], connections: int = 32, threads: int = 2
) -> float:
    """POST every payload once with wrk (C: ~20 µs of CPU a request, so the load generator takes
    little of the CPU the daemon needs); returns the seconds from launch until all are stored."""
    _, before = server.counts()
    with tempfile.TemporaryDirectory(prefix="syncd-wrk-") as tmp:
        script, data = Path(tmp) / "post.lua", Path(tmp) / "events.tsv"
        script.write_text(WRK_SCRIPT)
        data.write_bytes(b"".join(sig.encode() + b"\t" + body + b"\n" for body, sig in payloads))
        argv = ["wrk", f"-t{threads}", f"-c{connections}", "-d600s", "-s", str(script)]
        url = f"http://127.0.0.1:{server.port}"
        t0 = time.monotonic()
        wrk = subprocess.Popen(
            [*argv, url, "--", str(data), str(threads)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            while server.stored() < before + len(payloads):
                if wrk.poll() is not None:
                    raise RuntimeError(f"wrk exited early:\n{wrk.stdout.read() if wrk.stdout else ''}")
                time.sleep(0.02)
            elapsed = time.monotonic() - t0
        finally:
            wrk.send_signal(signal.SIGINT)
            out = wrk.communicate(timeout=30)[0]
    for line in out.splitlines():
        if "Non-2xx or 3xx responses:" in line:
            raise RuntimeError(f"non-200 answers from the daemon: {line.strip()}")
    return elapsed


class ProcessServer(Server):
    """``syncd run`` in a process of its own, as in production: with ``workers`` > 1, a
    supervisor and that many serving processes on one socket (worker 0 applies)."""

    def __init__(self, database_url: str, data_dir: str, *, workers: int, apply: bool = True) -> None:
        from syncd.stripe_emulator.server import free_port

        catalog = Path(data_dir) / "catalog.toml"
        catalog.write_text(CATALOG)
        self.port = free_port()
        env = {
            **os.environ,
            "SYNCD_DATA_DIR": data_dir,
            "SYNCD_DATABASE_URL": database_url,
            "SYNCD_DATABASE_POOL_SIZE": "20",
            "SYNCD_CATALOG_PATH": str(catalog),
            "SYNCD_STRIPE_API_KEY": "sk_test_bench",
            "SYNCD_STRIPE_API_BASE": "http://127.0.0.1:9",  # nothing listens: no calls leave
            "SYNCD_STRIPE_WEBHOOK_SECRET": SECRET,
            "SYNCD_STRIPE_REFETCH": "",
            "SYNCD_STRIPE_APPLIER": APPLIER[0],
            "SYNCD_SCHEDULER_EVENTS_REPLAY_INTERVAL_S": "3600",
            "SYNCD_SCHEDULER_ENABLED": "true" if apply else "false",
            "SYNCD_SERVER_WORKERS": str(workers),
            "SYNCD_LOG_LEVEL": "warning",
            "PYTHONPATH": str(Path(__file__).resolve().parent.parent),  # this tree's syncd
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "syncd", "run", "--host", "127.0.0.1", "--port", str(self.port)], env=env
        )
        self.engine = create_engine(database_url)
        self._poll = None
        deadline = time.monotonic() + 120
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("syncd run did not start")
            time.sleep(0.2)

    def stop(self) -> None:
        if self._poll is not None:
            self._poll.close()
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)
        self.engine.dispose()


def post_all(
    port: int, payloads: list[tuple[bytes, str]], threads: int, rate: float | None = None
) -> dict[str, float]:
    """POST every payload from a forked child (the lean client in :mod:`bench._loadgen`, or
    ``http.client`` threads with ``--client httpclient``), ``threads`` keep-alive connections,
    optionally paced to ``rate``/s. Returns each event's send time (``time.time()``) by id."""
    ids = [str(json.loads(body)["id"]) for body, _ in payloads]
    if CLIENT[0] != "httpclient":
        times, CLIENT_CPU_S[0] = _loadgen.post_forked(port, "/webhooks/stripe", payloads, ids, threads, rate)
        return times
    with tempfile.NamedTemporaryFile(suffix=".json") as sent:
        child = multiprocessing.get_context("fork").Process(
            target=_post_all, args=(port, payloads, ids, threads, rate, sent.name)
        )
        child.start()
        child.join()
        if child.exitcode != 0:
            raise RuntimeError(f"the load generator failed (exit {child.exitcode})")
        times: dict[str, float] = json.loads(Path(sent.name).read_text())
        return times


def _post_all(
    port: int,
    payloads: list[tuple[bytes, str]],
    ids: list[str],
    threads: int,
    rate: float | None,
    sent_path: str,
) -> None:
    """POST every payload with ``http.client`` (``threads`` keep-alive connections)."""
    start = time.monotonic()
    errors: list[str] = []
    sent: dict[str, float] = {}

    def worker(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for i in range(k, len(payloads), threads):
            if rate is not None:
                delay = start + i / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            body, sig = payloads[i]
            sent[ids[i]] = time.time()
            conn.request(
                "POST",
                "/webhooks/stripe",
                body=body,
                headers={"Stripe-Signature": sig, "Content-Type": "application/json"},
            )
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                errors.append(str(response.status))
        conn.close()

    pool = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    Path(sent_path).write_text(json.dumps(sent))
    if errors:
        raise RuntimeError(f"{len(errors)} non-200 answers, e.g. {errors[:3]}")


def deliver(server: Server, payloads: list[tuple[bytes, str]], client: str | None = None) -> float:
    """POST every payload as fast as the daemon takes them; seconds until all were answered."""
    if client == "wrk" or (client is None and shutil.which("wrk")):
        return post_wrk(server, payloads)
    t0 = time.monotonic()
    post_all(server.port, payloads, threads=8 if CLIENT[0] == "httpclient" else CONNECTIONS[0])
    return time.monotonic() - t0


def serve(database_url: str, data_dir: str, workers: int, apply: bool = True, redis_url: str = "") -> Server:
    if workers == 0:
        return Server(database_url, data_dir, apply=apply, redis_url=redis_url)
    return ProcessServer(database_url, data_dir, workers=workers, apply=apply)


def intake_only(
    database_url: str, count: int, client: str | None = None, workers: int = 0
) -> dict[str, float]:
    """Webhooks verified, stored and answered, nothing applied: the intake's own rate."""
    with tempfile.TemporaryDirectory() as data_dir:
        server = serve(database_url, data_dir, workers, apply=False)
        try:
            payloads = [signed(e) for e in events(count, "i")]
            elapsed = deliver(server, payloads, client)
            pending, stored = server.counts()
        finally:
            server.stop()
    if stored != len(payloads) or pending != len(payloads):
        raise RuntimeError(f"{stored} stored, {pending} pending of {len(payloads)}")
    return {"events": len(payloads), "receive_per_s": len(payloads) / elapsed}


def throughput(server: Server, count: int, client: str | None = None) -> dict[str, float]:
    payloads = [signed(e) for e in events(count, "t")]
    t0 = time.monotonic()
    received = deliver(server, payloads, client)
    t_done = server.wait_applied(len(payloads))
    with Session(server.engine) as session:
        logged = session.exec(select(func.count()).select_from(ChangeLog)).one()
    return {
        "events": len(payloads),
        "events_per_s": len(payloads) / (t_done - t0),
        "receive_per_s": len(payloads) / received,
        "change_log_rows": float(logged),
    }


def latency(server: Server, rate: float, seconds: float) -> dict[str, float]:
    """Paced deliveries; receipt (``received_at``, stamped when the daemon has read the request)
    -> applied (``applied_at``, stamped in the applying transaction just before its commit), and
    the same from the client's send time (includes the request's queueing and transfer)."""
    _, before = server.counts()
    payloads = [signed(e) for e in events(int(rate * seconds), "l")]
    sent = post_all(server.port, payloads, threads=4, rate=rate)
    server.wait_applied(before + len(payloads))
    with Session(server.engine) as session:
        rows = session.exec(
            select(InboxEvent.event_id, InboxEvent.received_at, InboxEvent.applied_at).where(
                col(InboxEvent.event_id).like("evt_l%")
            )
        ).all()
    lat = sorted((applied - received).total_seconds() * 1000 for _, received, applied in rows if applied)
    from_send = sorted(
        (applied.timestamp() - sent[event_id]) * 1000 for event_id, _, applied in rows if applied
    )
    out = {
        "events": len(lat),
        "p50_ms": quantile(lat, 0.5),
        "p99_ms": quantile(lat, 0.99),
        "max_ms": lat[-1],
        "send_p50_ms": quantile(from_send, 0.5),
        "send_p99_ms": quantile(from_send, 0.99),
    }
    if server.published:
        out.update(receipt_to_published(server))
    return out


def quantile(ordered: list[float], q: float) -> float:
    """The ``q`` quantile of sorted values (nearest rank below)."""
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def receipt_to_published(server: Server) -> dict[str, float]:
    """Receipt -> in Redis, per event: an event is published when every change-log row its
    applying transaction wrote has been written to Redis. The transaction is Postgres's own
    record: the inbox row's ``xmin`` (its last write, the mark) and the change-log rows' match."""
    server.wait_published()
    with server.engine.connect() as conn:
        events_ = conn.execute(
            text(
                "SELECT received_at, xmin::text FROM inbox_event"
                " WHERE event_id LIKE 'evt_l%' AND status = 'applied'"
            )
        ).all()
        changes: dict[str, list[int]] = {}
        for change_id, xid in conn.execute(text("SELECT id, xmin::text FROM change_log")):
            changes.setdefault(xid, []).append(change_id)
    lat = sorted(
        (max(server.published[c] for c in changes[xid]) - received.timestamp()) * 1000
        for received, xid in events_
        if xid in changes
    )
    if not lat:
        raise RuntimeError("no applied event matched a transaction's change-log rows")
    return {
        "published_events": len(lat),
        # Left out, and counted so that it shows: an event marked inside a savepoint (a batch's
        # one-by-one fallback: its xmin is the savepoint's) or whose transaction logged nothing.
        "unattributed_events": len(events_) - len(lat),
        "pub_p50_ms": quantile(lat, 0.5),
        "pub_p99_ms": quantile(lat, 0.99),
        "pub_max_ms": lat[-1],
    }


def catalog_daemon(database_url: str, data_dir: str) -> Daemon:
    """A prepared in-process daemon (no HTTP) on ``database_url`` with the bench catalog."""
    settings = load_settings(
        None,
        environ={"SYNCD_DATA_DIR": data_dir, "SYNCD_DATABASE_URL": database_url, "SYNCD_CATALOG_PATH": ""},
    )
    daemon = Daemon(settings)
    daemon.prepare()
    with session_scope(daemon.engine) as session:
        apply_catalog(session, loads(CATALOG))
    return daemon


def apply_only(database_url: str, count: int) -> dict[str, float]:
    """Events stored straight into the inbox, then applied by one thread: the applier's cost."""
    with tempfile.TemporaryDirectory() as data_dir:
        daemon = catalog_daemon(database_url, data_dir)
        evs = events(count, "a")
        with daemon.engine.begin() as conn:
            for event in evs:
                store_event(conn, json.dumps(event).encode(), event)
        options = ApplyOptions(refetch=frozenset())
        statements = [0]

        def count(*_: Any) -> None:
            statements[0] += 1

        sa_event.listen(daemon.engine, "before_cursor_execute", count)
        t0, c0 = time.monotonic(), time.thread_time()
        done = 0
        while done < len(evs):
            done += apply_pending(daemon.engine, None, options=options, limit=1000).processed
        wall, cpu = time.monotonic() - t0, time.thread_time() - c0
        created_statements, statements[0] = statements[0], 0
        # The steady state: existing customers change their subscriptions (quantity updates,
        # several per customer, delivered together), the most common event in production.
        customers = len(evs) // 3 + 1
        updates = updates_for(customers, len(evs))
        with daemon.engine.begin() as conn:
            for event in updates:
                store_event(conn, json.dumps(event).encode(), event)
        t1, c1 = time.monotonic(), time.thread_time()
        done = 0
        while done < len(updates):
            done += apply_pending(daemon.engine, None, options=options, limit=1000).processed
        wall1, cpu1 = time.monotonic() - t1, time.thread_time() - c1
        daemon.close()
    return {
        "events": float(len(evs)),
        "events_per_s": len(evs) / wall,
        "cpu_ms_per_event": cpu / len(evs) * 1000,
        "statements_per_event": created_statements / len(evs),
        "update_statements_per_event": statements[0] / len(updates),
        "updates_per_s": len(updates) / wall1,
        "update_cpu_ms": cpu1 / len(updates) * 1000,
    }


def updates_for(customers: int, count: int) -> list[dict[str, Any]]:
    """``customer.subscription.updated`` for existing customers: 3 rounds of quantity changes."""
    now = int(time.time()) + 10
    out: list[dict[str, Any]] = []
    for k in range(count):
        n, round_ = k % customers, k // customers
        out.append(
            {
                "id": f"evt_upd_{k}",
                "object": "event",
                "type": "customer.subscription.updated",
                "api_version": "2026-10-28.endive",
                "created": now + round_,
                "livemode": False,
                "data": {"object": subscription_for(f"a{n}", now, 3 + round_)},
                "request": {"id": None, "idempotency_key": None},
            }
        )
    return out


def sweep_rate(
    database_url: str, customers: int, workers: int = 2, objects: str = "stripe"
) -> dict[str, float]:
    """Apply listed pages (customers, then subscriptions) through the sweep's page pool (the
    threads, locks, cursor and planner statistics of ``syncd backfill``), no HTTP.
    ``objects``: "stripe", objects as the API lists them (``_stripe_objects``); "trimmed", the
    few fields syncd reads (a few hundred bytes: the lower bound of the work)."""
    with tempfile.TemporaryDirectory() as data_dir:
        daemon = catalog_daemon(database_url, data_dir)
        created = int(time.time())
        use_objects(objects, created)

        def listed(kind: str, n: int) -> dict[str, Any]:
            if kind == "customer":
                return customer_for(f"s{n}", f"Swept {n}")
            return subscription_for(f"s{n}", created, 3)

        def run(result: SweepResult, stats: PlannerStats) -> None:
            for kind in ("customer", "subscription"):
                pool = page_pool(
                    daemon.engine,
                    None,
                    kind,
                    created=created,
                    result=result,
                    now=utcnow(),
                    workers=workers,
                    stats=stats,
                    link=False,  # as syncd backfill: companies come with subscriptions
                )
                with pool:
                    for start in range(0, customers, PAGE_SIZE):
                        pool.submit(
                            [listed(kind, n) for n in range(start, min(customers, start + PAGE_SIZE))]
                        )
            link_customers(daemon.engine, result=result, now=utcnow(), workers=workers, stats=stats)

        result, stats = SweepResult(), PlannerStats(daemon.engine)
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0, c0 = time.monotonic(), time.process_time()
        run(result, stats)
        elapsed, cpu = time.monotonic() - t0, time.process_time() - c0
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        # The nightly case: the same objects again, nothing changed.
        again = SweepResult()
        t1 = time.monotonic()
        run(again, stats)
        resweep = again.stored / (time.monotonic() - t1)
        daemon.close()
    return {
        "objects": float(result.stored),
        "objects_per_s": result.stored / elapsed,
        "cpu_ms_per_object": cpu / max(1, result.stored) * 1000,
        "resweep_per_s": resweep,
        "peak_rss_mb": rss / 1024,
        "rss_growth_mb": (rss - rss0) / 1024,
        "stats_refreshes": float(stats.refreshes),
        "subscription_bytes": float(len(json.dumps(listed("subscription", 0), separators=(",", ":")))),
        "customer_bytes": float(len(json.dumps(listed("customer", 0), separators=(",", ":")))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts (smoke run)")
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--latency-rate", type=float, default=200.0, help="events/s for the latency run")
    parser.add_argument(
        "--redis",
        default=os.environ.get("SYNCD_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
        help="Redis the adapter publishes to during the end-to-end runs ('' for none; "
        "--workers 0 only): latency is then also measured to the change's publication",
    )
    parser.add_argument(
        "--client",
        choices=("wrk", "python", "httpclient"),
        default="wrk" if shutil.which("wrk") else "python",
        help="load generator for the unpaced runs: wrk (C; apt-get install wrk), the lean Python "
        "client in bench/_loadgen.py, or http.client threads (several times the lean client's CPU)",
    )
    parser.add_argument("--sweep-customers", type=int, default=None, help="customers in the sweep run")
    parser.add_argument("--sweep-workers", type=int, default=2, help="threads applying sweep pages")
    parser.add_argument(
        "--objects",
        choices=("stripe", "trimmed"),
        default="stripe",
        help="events' and listed objects as Stripe renders them (~3 KB a subscription) or trimmed",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="0: the daemon in this process (a thread); N: `syncd run` with [server] workers = N",
    )
    parser.add_argument(
        "--applier",
        choices=("auto", "process", "thread"),
        default="auto",
        help="[stripe] applier: its own process (auto on Postgres) or a thread of the server",
    )
    parser.add_argument(
        "--only", default="ieas", help="parts to run: i(ntake), e(nd to end + latency), a(pply), s(weep)"
    )
    args = parser.parse_args()
    APPLIER[0] = args.applier
    CLIENT[0] = args.client
    use_objects(args.objects)
    n_events = 600 if args.quick else 3000
    lat_seconds = 3 if args.quick else 10
    n_sweep = args.sweep_customers or (1000 if args.quick else 10_000)
    print(f"load average at start: {os.getloadavg()[0]:.1f} ({os.cpu_count()} CPUs)")

    if "i" in args.only:
        with fresh_database(args.postgres) as url:
            io = intake_only(url, n_events, args.client, args.workers)
            print(
                f"intake only (verified, stored, answered; applier off; client {args.client}): "
                f"{io['events']:.0f} events at {io['receive_per_s']:,.0f} events/s"
            )
    if "e" in args.only:
        with fresh_database(args.postgres) as url, tempfile.TemporaryDirectory() as data_dir:
            server = serve(url, data_dir, args.workers, redis_url=args.redis)
            try:
                tp = throughput(server, n_events, args.client)
                client_cpu = (
                    f"; client {CLIENT_CPU_S[0] * 1e6:.0f} µs CPU a request"
                    if args.client == "python"
                    else ""
                )
                print(
                    f"end to end: {tp['events']:.0f} events, {tp['events_per_s']:,.0f} events/s applied "
                    f"(received at {tp['receive_per_s']:,.0f}/s; {tp['change_log_rows']:.0f} change_log rows"
                    f"{client_cpu})"
                )
                lt = latency(server, args.latency_rate, lat_seconds)
                print(
                    f"at {args.latency_rate:.0f} events/s: receipt -> applied p50 {lt['p50_ms']:.1f} ms, "
                    f"p99 {lt['p99_ms']:.1f} ms, max {lt['max_ms']:.1f} ms ({lt['events']:.0f} events); "
                    f"client send -> applied p50 {lt['send_p50_ms']:.1f} ms, p99 {lt['send_p99_ms']:.1f} ms"
                )
                if "pub_p99_ms" in lt:
                    print(
                        f"at {args.latency_rate:.0f} events/s: receipt -> published to Redis "
                        f"p50 {lt['pub_p50_ms']:.1f} ms, p99 {lt['pub_p99_ms']:.1f} ms, "
                        f"max {lt['pub_max_ms']:.1f} ms ({lt['published_events']:.0f} events; "
                        f"{lt['unattributed_events']:.0f} not tied to change-log rows, left out)"
                    )
            finally:
                server.stop()
    if "a" in args.only:
        with fresh_database(args.postgres) as url:
            ap = apply_only(url, n_events)
            print(
                f"apply only (one thread, events already stored): {ap['events_per_s']:,.0f} events/s, "
                f"{ap['cpu_ms_per_event']:.2f} ms CPU per event, "
                f"{ap['statements_per_event']:.1f} SQL statements per event "
                "(new customers: companies created on the paid plan when their subscription shares the batch)"
            )
            print(
                f"apply only, steady state (subscription updates of existing customers): "
                f"{ap['updates_per_s']:,.0f} events/s, {ap['update_cpu_ms']:.2f} ms CPU per event, "
                f"{ap['update_statements_per_event']:.1f} SQL statements per event "
                "(target >= 1,000/s end to end)"
            )
    if "s" in args.only:
        with fresh_database(args.postgres) as url:
            sw = sweep_rate(url, n_sweep, args.sweep_workers, args.objects)
            print(
                f"sweep: {sw['objects']:,.0f} objects applied at {sw['objects_per_s']:,.0f} objects/s "
                f"on {args.sweep_workers} thread(s) ({sw['cpu_ms_per_object']:.2f} ms CPU per object in this "
                f"process; planner statistics refreshed {sw['stats_refreshes']:.0f} times); "
                f"peak RSS {sw['peak_rss_mb']:.0f} MB "
                f"(grew {sw['rss_growth_mb']:.0f} MB during the sweep); "
                f"re-sweep of the unchanged objects: {sw['resweep_per_s']:,.0f} objects/s; "
                f"{args.objects} objects: {sw['subscription_bytes']:,.0f} bytes a subscription, "
                f"{sw['customer_bytes']:,.0f} a customer"
            )
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
