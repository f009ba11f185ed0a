"""A storm of Stripe webhooks (20% duplicates, shuffled) into `syncd run` on Postgres while the
daemon is SIGKILLed five times at random moments; senders retry like Stripe does.

Afterwards: every event that got a 2xx is in the inbox exactly once and applied; after
`syncd reconcile --repair` local state equals the emulator's for every company; every
outbound webhook delivery reached the receiver at least once, under a stable id.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
import zlib
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import httpx
from sqlmodel import Session, col, func, select

from syncd.db import make_engine
from syncd.models import CompanyKey, CompanyPlan, InboxEvent, Plan, WebhookDelivery
from syncd.stripe_emulator.webhooks import sign_payload

from ..cli_helpers import run_cli
from ..webhooks.receiver import Received, Receiver
from .conftest import (
    EMULATOR_KEY,
    DaemonProcess,
    RecordingEmulator,
    add_webhook,
    customers_with_plans,
    prepare_database,
    stripe_catalog,
    wait_until,
    webhook_config,
)

SECRET = "whsec_faults"  # the emulator fixture's webhook secret
KILLS = 5
SENDERS = 4


def _raw_events(emulator: RecordingEmulator) -> list[dict[str, Any]]:
    """Every event as the emulator's Events API returns it (raw JSON, as a webhook carries it)."""
    out: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 100}
    with httpx.Client(base_url=emulator.url, headers={"Authorization": f"Bearer {EMULATOR_KEY}"}) as http:
        while True:
            page = http.get("/v1/events", params=params).raise_for_status().json()
            out += page["data"]
            if not page["has_more"]:
                return out
            params["starting_after"] = page["data"][-1]["id"]


def _stripe_events(emulator: RecordingEmulator, ids: dict[str, str], unique: int) -> list[dict[str, Any]]:
    """At least ``unique`` real events from the emulator: customers, subscriptions, changes."""
    client = emulator.client()
    events: list[dict[str, Any]] = []
    while len(events) < unique:
        customers_with_plans(client, ids, 25)
        # Some churn, so later events contradict earlier ones (order matters if applied naively).
        for sub in client.v1.subscriptions.list({"limit": 10, "status": "active"}).data[:3]:
            client.v1.subscriptions.cancel(sub.id)
        events = _raw_events(emulator)
    return events


class Storm:
    """Senders that POST every payload until it gets a 2xx, retrying through daemon deaths."""

    def __init__(self, url: str, payloads: list[str]) -> None:
        self.url = url
        self.queue = list(reversed(payloads))
        self.lock = threading.Lock()
        self.accepted: list[str] = []
        self.failures = 0
        self.sent = 0

    def _next(self) -> str | None:
        with self.lock:
            return self.queue.pop() if self.queue else None

    def worker(self) -> None:
        with httpx.Client(timeout=10) as http:
            while (payload := self._next()) is not None:
                while True:
                    header = sign_payload(payload, SECRET, int(time.time()))  # fresh on every retry
                    try:
                        answer = http.post(
                            f"{self.url}/webhooks/stripe",
                            content=payload,
                            headers={"Stripe-Signature": header, "Content-Type": "application/json"},
                        )
                        if 200 <= answer.status_code < 300:
                            break
                        assert answer.status_code >= 500 or answer.status_code == 429, answer.text
                    except httpx.TransportError:
                        pass
                    with self.lock:
                        self.failures += 1
                    time.sleep(0.1)
                with self.lock:
                    self.sent += 1
                    self.accepted.append(json.loads(payload)["id"])

    def run(self, total: int, kill: Any) -> None:
        threads = [threading.Thread(target=self.worker) for _ in range(SENDERS)]
        for t in threads:
            t.start()
        rng = random.Random(20260101)
        moments = sorted(rng.uniform(0.05, 0.9) for _ in range(KILLS))
        for moment in moments:
            while self.sent < moment * total and any(t.is_alive() for t in threads):
                time.sleep(0.005)
            time.sleep(rng.uniform(0, 0.05))
            kill()
        for t in threads:
            t.join(timeout=600)
        assert not any(t.is_alive() for t in threads)


def _local_plans(url: str) -> dict[str, set[str]]:
    """stripe customer id -> the keys of its billing plans, from syncd's database."""
    engine = make_engine(url)
    with Session(engine) as session:
        keys = {p.id: p.key for p in session.exec(select(Plan)).all()}
        owners = dict(
            session.exec(
                select(CompanyKey.company_id, CompanyKey.value).where(
                    col(CompanyKey.key) == "stripe_customer_id"
                )
            ).all()
        )
        out: dict[str, set[str]] = {cus: set() for cus in owners.values()}
        for row in session.exec(select(CompanyPlan).where(col(CompanyPlan.source) == "billing")).all():
            if row.company_id in owners:
                out[owners[row.company_id]].add(keys[row.plan_id])
    engine.dispose()
    return out


def _emulator_plans(emulator: RecordingEmulator, product_plans: dict[str, str]) -> dict[str, set[str]]:
    client = emulator.client()
    out: dict[str, set[str]] = {
        c.id: set() for c in client.v1.customers.list({"limit": 100}).auto_paging_iter()
    }
    for sub in client.v1.subscriptions.list({"limit": 100, "status": "all"}).auto_paging_iter():
        if sub.status in ("active", "trialing", "past_due"):
            for item in sub["items"].data:
                out[str(sub.customer)].add(product_plans[str(item.price.product)])
    return out


def test_storm_with_duplicates_and_sigkills_converges(
    emulator: RecordingEmulator, postgres_url: str, tmp_path: Path, soak: bool
) -> None:
    total = 10_000 if soak else int(os.environ.get("SYNCD_FAULTS_STORM_EVENTS", "600"))
    phases: dict[str, float] = {}
    mark = time.monotonic()

    def phase(name: str) -> None:
        nonlocal mark
        phases[name] = round(time.monotonic() - mark, 1)
        phases[f"{name}_stripe_calls"] = len(emulator.api_calls())
        mark = time.monotonic()

    ids = stripe_catalog(emulator.client())
    unique_events = _stripe_events(emulator, ids, int(total * 0.8))[: int(total * 0.8)]
    rng = random.Random(9)
    storm_events = unique_events + rng.sample(unique_events, total - len(unique_events))  # 20% again
    rng.shuffle(storm_events)
    payloads = [json.dumps(e) for e in storm_events]
    phase("generate")

    prepare_database(postgres_url, ids)
    seen: set[str] = set()

    def flaky(request: Received) -> int:
        """Every fifth delivery id fails its first attempt: a redelivery must reuse the id."""
        msg_id = request.headers.get("webhook-id", "")
        if zlib.crc32(msg_id.encode()) % 5 or msg_id in seen:
            return 200
        seen.add(msg_id)
        return 503

    receiver = Receiver(respond=flaky).start()
    add_webhook(
        postgres_url,
        receiver.url,
        ["entitlements.updated", "company.created", "company.updated", "company.plan_changed"],
    )
    daemon = DaemonProcess(
        tmp_path,
        SYNCD_DATABASE_URL=postgres_url,
        SYNCD_CATALOG_PATH="",
        SYNCD_CONFIG=str(webhook_config(tmp_path, max_attempts=10, backoff_max_s=0.5)),
        SYNCD_STRIPE_API_KEY="sk_test_emulator",
        SYNCD_STRIPE_API_BASE=emulator.url,
        SYNCD_STRIPE_WEBHOOK_SECRET=SECRET,
        SYNCD_STRIPE_REQUESTS_PER_SECOND="1000",
        SYNCD_LOG_LEVEL=os.environ.get("SYNCD_FAULTS_LOG_LEVEL", "warning"),
    ).start()
    phase("start")
    kills: list[float] = []

    def kill_and_restart() -> None:
        daemon.kill()
        kills.append(time.monotonic())
        time.sleep(random.uniform(0.1, 0.5))
        daemon.start()

    try:
        storm = Storm(daemon.url, payloads)
        t0 = time.monotonic()
        storm.run(len(payloads), kill_and_restart)
        elapsed = time.monotonic() - t0
        phase("storm")
        assert len(kills) == KILLS and daemon.starts == KILLS + 1
        print(
            f"storm: {len(payloads)} posts ({len(unique_events)} unique) in {elapsed:.1f}s, "
            f"{KILLS} SIGKILLs, {storm.failures} failed attempts retried"
        )

        # Every accepted event is stored exactly once and gets applied.
        engine = make_engine(postgres_url)

        def inbox_drained() -> bool:
            with Session(engine) as session:
                return not session.exec(
                    select(func.count()).select_from(InboxEvent).where(col(InboxEvent.status) == "pending")
                ).one()

        wait_until(inbox_drained, max(120, total / 5), "the inbox to drain")
        phase("drain")
        with Session(engine) as session:
            stored = Counter(session.exec(select(InboxEvent.event_id)).all())
            statuses = Counter(session.exec(select(InboxEvent.status)).all())
        assert set(stored) == {e["id"] for e in unique_events} and set(stored.values()) == {1}
        assert "failed" not in statuses, statuses  # none given up on (a crash is not its fault)

        # Reconcile, then local state is the emulator's for every company.
        repaired = run_cli("reconcile", "--repair", env=daemon.env, timeout=600)
        assert repaired.returncode == 0, repaired.stdout + repaired.stderr
        product_plans = {ids[k]: k for k in ("pro", "enterprise", "analytics")} | {ids["team"]: "team"}
        assert _local_plans(postgres_url) == _emulator_plans(emulator, product_plans)
        if soak:  # the full check of every mirrored object too (CI: the plan comparison above)
            verify = run_cli("reconcile", "--verify", env=daemon.env, timeout=600)
            assert verify.returncode == 0 and "0 difference(s)" in verify.stdout, (
                verify.stdout + verify.stderr
            )
        phase("reconcile")

        # Every outbound delivery arrived at least once, and a redelivery carried the same id.
        def delivered() -> bool:
            with Session(engine) as session:
                statuses = Counter(session.exec(select(WebhookDelivery.status)).all())
            return bool(statuses) and set(statuses) == {"success"}

        wait_until(delivered, max(120, total / 10), "every outbound delivery to succeed")
        with Session(engine) as session:
            rows = {r.id: r for r in session.exec(select(WebhookDelivery)).all()}
        engine.dispose()
        bodies: dict[str, set[bytes]] = defaultdict(set)
        for got in receiver.received:
            bodies[got.headers["webhook-id"]].add(got.body)
        assert {got.headers["webhook-id"] for got in receiver.ok()} == set(rows)  # each arrived
        assert set(bodies) == set(rows)  # and nothing unknown was sent
        assert all(len(b) == 1 for b in bodies.values())  # same id, same body on redelivery
        redelivered = len(receiver.received) - len(bodies)
        assert redelivered >= len(seen) > 0
        phase("outbound")
        print(f"outbound: {len(rows)} deliveries, {redelivered} redelivered (same id); phases (s): {phases}")
    finally:
        receiver.stop()
        daemon.stop()
