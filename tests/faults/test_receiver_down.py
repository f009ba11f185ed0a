"""The outbound webhook receiver is down: through a running daemon, deliveries back off,
become dead letters, and `syncd webhooks replay` delivers every one once it is back."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import httpx
from sqlmodel import Session, select

from syncd.db import make_engine
from syncd.models import WebhookDelivery

from ..cli_helpers import run_cli
from ..webhooks.receiver import Receiver
from .conftest import DaemonProcess, add_webhook, secret_key, wait_until, webhook_config


def _deliveries(url: str) -> list[WebhookDelivery]:
    engine = make_engine(url)
    with Session(engine) as session:
        rows = list(session.exec(select(WebhookDelivery)).all())
    engine.dispose()
    return rows


def test_receiver_down_backs_off_dead_letters_and_replays_completely(
    sqlite_url: str, tmp_path: Path, soak: bool
) -> None:
    receiver = Receiver()  # its port is reserved, nothing listens yet: the receiver is down
    config = webhook_config(tmp_path, max_attempts=3, backoff_initial_s=0.3, backoff_max_s=0.6)
    daemon = DaemonProcess(
        tmp_path, SYNCD_DATABASE_URL=sqlite_url, SYNCD_CATALOG_PATH="", SYNCD_CONFIG=str(config)
    ).start()
    try:
        add_webhook(sqlite_url, receiver.url, ["entitlements.updated", "company.created", "company.updated"])
        key = secret_key(sqlite_url)
        companies = 200 if soak else 20
        with httpx.Client(base_url=daemon.url, headers={"X-Schematic-Api-Key": key}, timeout=10) as api:
            for n in range(companies):
                made = api.post("/companies", json={"keys": {"tenant": f"co-{n}"}, "name": f"Co {n}"})
                assert made.status_code == 200, made.text

        def all_dead() -> bool:
            rows = _deliveries(sqlite_url)
            return len(rows) >= companies and all(r.status == "dead" for r in rows)

        wait_until(
            all_dead,
            60,
            "every delivery to become a dead letter",
            detail=lambda: f"{Counter(r.status for r in _deliveries(sqlite_url))}\n{daemon.tail()}",
        )
        dead = _deliveries(sqlite_url)
        # Each was tried max_attempts times, spaced by the backoff (0.3 s then 0.6 s at least).
        assert {r.attempts for r in dead} == {3}
        for row in dead:
            assert row.sent_at is not None and (row.updated_at - row.created_at).total_seconds() >= 0.8
        assert all(r.last_error for r in dead)

        receiver.start()
        replay = run_cli("webhooks", "replay", "--since", "1h", env=daemon.env)
        assert replay.returncode == 0, replay.stderr
        assert f"re-queued {len(dead)} dead-letter deliveries" in replay.stdout
        got = receiver.wait_for(len(dead), timeout=60)
        wait_until(
            lambda: all(r.status == "success" for r in _deliveries(sqlite_url)),
            30,
            "deliveries marked success",
        )
        # Every dead letter arrived, under its own stable id (the webhook-id header).
        assert {r.headers["webhook-id"] for r in got} == {r.id for r in dead}
        assert daemon.alive()
    finally:
        receiver.stop()
        assert daemon.stop() == 0, daemon.tail()
