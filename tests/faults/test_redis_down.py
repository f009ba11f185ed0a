"""Redis down (CI: 3 s; soak: 30 s): the example host app keeps answering from its last-known
state, syncd keeps accepting changes, and the app catches up within 5 s of Redis returning.

Redis here is a PRIVATE redis-server on a free port (append-only file, fsync always, so the
data survives its SIGKILL); the shared Redis is never touched.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from ..cli_helpers import ROOT
from ..conftest import free_port, unavailable
from .conftest import DaemonProcess, secret_key, wait_until

CATCH_UP_S = 5.0


class PrivateRedis:
    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.dir = directory
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir), "--save", ""]
        args += ["--appendonly", "yes", "--appendfsync", "always"]
        self.proc = subprocess.Popen(
            ["redis-server", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        client = redis.Redis.from_url(self.url)

        def up() -> bool:
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False

        wait_until(up, 10, "the private redis-server")
        client.close()
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        unavailable("redis-server", "not on PATH")
    server = PrivateRedis(tmp_path).start()
    yield server
    server.kill()


def test_host_app_answers_through_a_redis_outage_and_catches_up(
    private_redis: PrivateRedis, sqlite_url: str, tmp_path: Path, soak: bool
) -> None:
    prefix = f"faults{secrets.token_hex(3)}"
    daemon = DaemonProcess(
        tmp_path,
        SYNCD_DATABASE_URL=sqlite_url,
        SYNCD_REDIS_URL=private_redis.url,
        SYNCD_REDIS_KEY_PREFIX=prefix,
    ).start()  # the demo catalog: "sso" comes with the enterprise plan
    app_port = free_port()
    host_app = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "examples.host_app.main:app",
            "--port",
            str(app_port),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("SYNCD_")},
            "SYNCD_EXAMPLE_REDIS_URL": private_redis.url,
            "SYNCD_EXAMPLE_PREFIX": prefix,
            "SYNCD_EXAMPLE_SYNCD_URL": daemon.url,
            "SYNCD_EXAMPLE_COMPANY_KEY": "tenant",
        },
    )
    app = httpx.Client(base_url=f"http://127.0.0.1:{app_port}", headers={"x-company-key": "acme"}, timeout=5)
    try:
        key = secret_key(sqlite_url)
        api = httpx.Client(base_url=daemon.url, headers={"X-Schematic-Api-Key": key}, timeout=10)
        company = api.post("/companies", json={"keys": {"tenant": "acme"}, "name": "Acme"})
        assert company.status_code == 200, company.text
        company_id = company.json()["data"]["id"]
        plans = {p["name"].lower(): p["id"] for p in api.get("/plans").json()["data"]}

        def set_base(plan: str) -> None:
            changed = api.put(
                f"/company-plans/{company_id}", json={"base_plan_id": plans[plan], "add_on_ids": []}
            )
            assert changed.status_code == 200, changed.text

        def sso_status() -> int | None:
            try:
                return app.get("/sso").status_code
            except httpx.TransportError:
                return None

        set_base("enterprise")
        wait_until(lambda: sso_status() == 200, 30, "the host app to see the enterprise plan")

        # Redis goes down; the app keeps answering from what it knew; syncd keeps accepting.
        private_redis.kill()
        outage = float(os.environ.get("SYNCD_FAULTS_REDIS_OUTAGE_S", 30 if soak else 3))
        down_at = time.monotonic()
        set_base("free")
        answers = []
        while time.monotonic() - down_at < outage:
            answers.append((sso_status(), app.get("/").status_code))
            time.sleep(0.1)
        assert answers and set(answers) == {(200, 200)}, set(answers)

        # Redis returns (same data directory): the app catches up with the change within 5 s.
        private_redis.start()
        back_at = time.monotonic()
        wait_until(lambda: sso_status() == 402, CATCH_UP_S, "the host app to catch up after Redis returned")
        print(
            f"redis down {outage:.0f}s: {len(answers)} answers from last-known state; "
            f"caught up {time.monotonic() - back_at:.2f}s after Redis returned"
        )
        api.close()
    finally:
        app.close()
        host_app.terminate()
        host_app.wait(timeout=10)
        assert daemon.stop() == 0, daemon.tail()
