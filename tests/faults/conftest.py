"""The fault suite's building blocks: soak sizing, a request-recording Stripe emulator, and
`syncd run` as a real process that can be SIGKILLed and restarted on the same port.

CI runs every scenario in bounded form (seconds); ``pytest --soak`` or ``SYNCD_SOAK=1``
runs the sizes issue #9 names (10,000 events, Redis down 30 s, ...); the soak storm outlasts
the suite's per-test timeout, so add ``--timeout 3600``:

    SYNCD_SOAK=1 .venv/bin/python -m pytest tests/faults -q -s --timeout 3600
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe
import uvicorn
from stripe.params import SubscriptionCreateParamsItem

from syncd.catalog import apply_catalog, loads
from syncd.db import make_engine, session_scope
from syncd.stripe_emulator import EmulatorConfig
from syncd.stripe_emulator.app import create_app
from syncd.stripe_emulator.emulator import Emulator

from ..cli_helpers import ROOT, syncd_env
from ..conftest import free_port
from ..stripe_sync.harness import CATALOG

#: 2026-01-01T00:00:00Z: the emulator clock starts here.
START = 1_767_225_600
EMULATOR_KEY = "sk_test_emulator"


@pytest.fixture
def soak(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--soak")) or os.environ.get("SYNCD_SOAK") == "1"


@dataclass(frozen=True, slots=True)
class Call:
    method: str
    path: str
    at: float  # time.monotonic() when the request arrived
    idempotency_key: str | None


@dataclass
class RecordingEmulator:
    """The project's Stripe emulator under uvicorn, recording every request it receives."""

    config: EmulatorConfig
    port: int = field(default_factory=free_port)
    calls: list[Call] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.app = create_app(self.config)
        self.emulator: Emulator = self.app.state.emulator
        self._lock = threading.Lock()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
            with self._lock:
                self.calls.append(
                    Call(scope["method"], scope["path"], time.monotonic(), headers.get("idempotency-key"))
                )
        await self.app(scope, receive, send)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> RecordingEmulator:
        config = uvicorn.Config(self, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            assert time.monotonic() < deadline and self._thread.is_alive(), "emulator did not start"
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self.emulator.close()

    def api_calls(self) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.path.startswith("/v1/")]

    def faults(self, **switches: Any) -> None:
        httpx.post(f"{self.url}/_emulator/faults", json=switches, timeout=10).raise_for_status()

    def client(self) -> stripe.StripeClient:
        return stripe.StripeClient(EMULATOR_KEY, base_addresses={"api": self.url}, max_network_retries=3)


@pytest.fixture
def emulator() -> Iterator[RecordingEmulator]:
    emu = RecordingEmulator(
        EmulatorConfig(start_time=START, seed=9, auto_deliver=False, webhook_secret="whsec_faults")
    ).start()
    yield emu
    emu.stop()


def stripe_catalog(client: stripe.StripeClient) -> dict[str, str]:
    """Products and monthly prices in the emulator, keyed as the harness catalog expects."""
    ids: dict[str, str] = {}
    for key, amount in (("pro", 4900), ("enterprise", 19900), ("analytics", 1900), ("team", 9900)):
        meta = {"syncd_plan": "team"} if key == "team" else {}
        product = client.v1.products.create({"name": key.title(), "metadata": meta})
        price = client.v1.prices.create(
            {
                "product": product.id,
                "unit_amount": amount,
                "currency": "usd",
                "recurring": {"interval": "month"},
            }
        )
        ids[key], ids[f"{key}_price"] = product.id, price.id
    return ids


def write_catalog(path: Path, ids: dict[str, str]) -> Path:
    path.write_text(CATALOG.format(**ids))
    return path


def prepare_database(url: str, ids: dict[str, str]) -> None:
    """Migrate ``url`` and apply the harness catalog linked to the emulator's products."""
    from syncd import migrate

    engine = make_engine(url)
    migrate.upgrade(engine)
    with session_scope(engine) as session:
        apply_catalog(session, loads(CATALOG.format(**ids)))
    engine.dispose()


def customers_with_plans(client: stripe.StripeClient, ids: dict[str, str], count: int) -> list[str]:
    """``count`` customers, most on a subscription (pro / enterprise / pro + analytics)."""
    made = []
    for n in range(count):
        cus = client.v1.customers.create(
            {"name": f"Co {n}", "invoice_settings": {"default_payment_method": "pm_card_visa"}}
        ).id
        made.append(cus)
        kind = n % 4
        if kind == 3:
            continue  # no subscription: stays on the initial plan
        items: list[SubscriptionCreateParamsItem] = [
            {"price": ids["enterprise_price" if kind == 1 else "pro_price"]}
        ]
        if kind == 2:
            items.append({"price": ids["analytics_price"]})
        client.v1.subscriptions.create({"customer": cus, "items": items})
    return made


class DaemonProcess:
    """`syncd run` as a subprocess on a fixed port, so a restart serves the same address."""

    def __init__(self, tmp_path: Path, **env: str) -> None:
        self.port = free_port()
        self.env = syncd_env(tmp_path, **env)
        self.proc: subprocess.Popen[bytes] | None = None
        self.logs = tmp_path / "daemon.log"
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90) -> DaemonProcess:
        self.starts += 1
        log = self.logs.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "syncd", "run", "--port", str(self.port)],
            env=self.env,
            cwd=ROOT,
            stdout=log,
            stderr=log,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited early ({self.proc.returncode}): {self.tail()}")
            try:
                if httpx.get(f"{self.url}/ready", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.kill()
        raise AssertionError(f"daemon did not become ready: {self.tail()}")

    def kill(self) -> None:
        """SIGKILL: no drain, no shutdown hooks, as an OOM kill or a power cut."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc is not None else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=10)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, lines: int = 30) -> str:
        text = self.logs.read_text(errors="replace") if self.logs.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def log_text(self) -> str:
        return self.logs.read_text(errors="replace") if self.logs.exists() else ""


def wait_until(predicate: Any, timeout: float, what: str, interval: float = 0.1, detail: Any = None) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            extra = f": {detail()}" if detail is not None else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{extra}")
        time.sleep(interval)


def secret_key(database_url: str) -> str:
    """A fresh secret API key in the (migrated) database."""
    from syncd.apikeys import create_key

    engine = make_engine(database_url)
    with session_scope(engine) as session:
        key = create_key(session, "secret", name="faults")[1]
    engine.dispose()
    return key


def add_webhook(database_url: str, url: str, types: list[str]) -> str:
    from syncd.services import webhooks

    engine = make_engine(database_url)
    with session_scope(engine) as session:
        endpoint = webhooks.create_webhook(session, name="faults", url=url, request_types=types)
        session.flush()
        webhook_id = endpoint.id
    engine.dispose()
    return webhook_id


def webhook_config(tmp_path: Path, **overrides: object) -> Path:
    """A config file turning the outbound webhook adapter on with fast retries."""
    values: dict[str, object] = {
        "enabled": True,
        "max_attempts": 3,
        "backoff_initial_s": 0.2,
        "backoff_max_s": 0.5,
        "timeout_s": 2.0,
        "claim_ttl_s": 5.0,
        "poll_interval_s": 0.1,
        "disable_after_dead": 0,
        **overrides,
    }
    lines = ["[plugins.webhook]"]
    for key, value in values.items():
        lines.append(f"{key} = {str(value).lower() if isinstance(value, bool) else value}")
    path = tmp_path / "syncd.toml"
    path.write_text("\n".join(lines) + "\n")
    return path
