"""``serve()`` runs a real server process bound to loopback."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx

from syncd.stripe_emulator.server import free_port


def test_serve_starts_a_loopback_server() -> None:
    port = free_port()
    code = (
        "from syncd.stripe_emulator import EmulatorConfig, serve;"
        f"serve('127.0.0.1', {port}, EmulatorConfig(start_time=1767225600), log_level='warning')"
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/_emulator/health", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "serve() did not come up"
                time.sleep(0.05)
        assert health.json() == {"ok": True, "now": 1767225600}
        response = httpx.get(
            f"http://127.0.0.1:{port}/v1/customers", headers={"Authorization": "Bearer sk_test_serve"}
        )
        assert response.json()["object"] == "list"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
