"""`syncd run` as a real process: answers on its port, is ready, stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from .cli_helpers import ROOT, run_cli, syncd_env
from .conftest import free_port


def start_daemon(tmp_path: Path, **env: str) -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "syncd", "run", "--port", str(port)],
        env=syncd_env(tmp_path, **env),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"daemon exited early: {proc.stderr.read() if proc.stderr else ''}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                return proc, port
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("daemon did not become ready")


def stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=30)
    return proc.returncode, stderr


def test_run_serves_health_ready_metrics_and_stops_on_sigterm(tmp_path: Path) -> None:
    proc, port = start_daemon(tmp_path)
    try:
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/healthz").json() == {"status": "ok"}
        ready = httpx.get(f"{base}/ready").json()
        assert ready["ready"] is True and ready["migrations"] == "head" and "cache_version" in ready
        metrics = httpx.get(f"{base}/metrics")
        assert "syncd_http_request_duration_seconds_bucket" in metrics.text
        missing = httpx.get(f"{base}/no-such-route")
        assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    finally:
        code, stderr = stop(proc)
    assert code == 0, stderr
    events = [json.loads(line)["event"] for line in stderr.splitlines() if line.startswith("{")]
    assert "daemon_listening" in events
    assert "stripe_emulator_started" in events
    assert events[-1] == "daemon_stopped"
    # The demo catalog was applied on start.
    exported = run_cli("catalog", "export", env=syncd_env(tmp_path))
    for plan in ('key = "free"', 'key = "pro"', 'key = "enterprise"'):
        assert plan in exported.stdout


def test_oversized_body_is_refused_with_413(tmp_path: Path) -> None:
    proc, port = start_daemon(tmp_path, SYNCD_SERVER_MAX_BODY_BYTES="1024")
    try:
        response = httpx.post(f"http://127.0.0.1:{port}/healthz", content=b"x" * 5000)
        assert response.status_code == 413
        assert response.json()["code"] == "payload_too_large"
    finally:
        stop(proc)
