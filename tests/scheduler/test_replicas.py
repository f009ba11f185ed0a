"""Several daemons as real processes: one leader on Postgres, failover, once-per-tick; SQLite refusal."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta
from itertools import pairwise
from pathlib import Path

import httpx
from sqlalchemy import create_engine
from sqlmodel import Session, col, select

from syncd.models import SchedulerRun

from ..cli_helpers import ROOT, syncd_env
from ..conftest import free_port
from ..test_daemon import start_daemon, stop

TICK = 0.5
FAST = {
    "SYNCD_SCHEDULER_LEASE_TTL_S": "3",
    "SYNCD_SCHEDULER_LEASE_RENEW_S": "1",
    "SYNCD_SCHEDULER_HEARTBEAT_INTERVAL_S": str(TICK),
    "SYNCD_CATALOG_PATH": "",
}


def _start_together(tmp_path: Path, count: int, **env: str) -> dict[int, subprocess.Popen[str]]:
    """Start replicas at once (start-up on a fresh database is serialised by the daemons)."""
    procs = {}
    for i in range(count):
        port = free_port()
        procs[port] = subprocess.Popen(
            [sys.executable, "-m", "syncd", "run", "--port", str(port)],
            env=syncd_env(tmp_path / f"d{i}", **env),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    deadline = time.monotonic() + 90
    pending = set(procs)
    while pending and time.monotonic() < deadline:
        for port in list(pending):
            assert procs[port].poll() is None, procs[port].communicate()[1]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                    pending.discard(port)
            except httpx.TransportError:
                pass
        time.sleep(0.2)
    if pending:
        for proc in procs.values():
            proc.kill()
        raise AssertionError("replicas did not become ready")
    return procs


def _role(port: int) -> str | None:
    try:
        role: str = httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).json()["role"]
    except (httpx.TransportError, ValueError, KeyError):
        return None
    return role


def _wait_for_leader(ports: list[int], timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        leaders = [p for p in ports if _role(p) == "leader"]
        if len(leaders) == 1:
            return leaders[0]
        time.sleep(0.1)
    raise AssertionError(f"no single leader within {timeout}s: {[_role(p) for p in ports]}")


def _done_ticks(stderr: str) -> list[str]:
    out = []
    for line in stderr.splitlines():
        if line.startswith("{"):
            event = json.loads(line)
            if event.get("event") == "cluster_job_done" and event.get("job") == "scheduler_heartbeat":
                out.append(event["tick"])
    return out


def test_three_daemons_one_leader_failover_and_every_tick_once(tmp_path: Path, postgres_url: str) -> None:
    env = {**FAST, "SYNCD_DATABASE_URL": postgres_url}
    procs = _start_together(tmp_path, 3, **env)
    ports = list(procs)
    stderr: dict[int, str] = {}
    try:
        leader = _wait_for_leader(ports, 15)
        assert sorted(_role(p) or "" for p in ports) == ["follower", "follower", "leader"]
        metrics = httpx.get(f"http://127.0.0.1:{leader}/metrics").text
        assert "syncd_scheduler_leader 1.0" in metrics
        time.sleep(1.6)  # a few heartbeat ticks under the first leader
        procs[leader].send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        _, stderr[leader] = procs[leader].communicate(timeout=10)
        survivors = [p for p in ports if p != leader]
        new_leader = _wait_for_leader(survivors, 30)
        failover_s = time.monotonic() - killed_at
        assert failover_s < 30
        time.sleep(1.6)  # ticks under the new leader
    finally:
        alive = {port: proc for port, proc in procs.items() if proc.poll() is None}
        for proc in alive.values():
            proc.send_signal(signal.SIGTERM)  # stop together: each drains its jobs
        for port, proc in alive.items():
            stderr[port] = proc.communicate(timeout=30)[1]
            assert proc.returncode == 0, stderr[port]
    print(f"failover took {failover_s:.1f}s")

    engine = create_engine(postgres_url)
    with Session(engine) as session:
        runs = session.exec(
            select(SchedulerRun)
            .where(col(SchedulerRun.job_id) == "scheduler_heartbeat", col(SchedulerRun.status) == "done")
            .order_by(col(SchedulerRun.tick))
        ).all()
    engine.dispose()
    holders = {r.holder for r in runs}
    assert len(holders) >= 2  # the first leader and its successor both ran ticks
    # No tick missed: consecutive runs cover the grid without gaps or overlaps.
    step = timedelta(seconds=TICK)
    for before, after in pairwise(runs):
        assert after.covers_from == before.tick + step, (before, after)
    total = sum(r.ticks for r in runs)
    assert total == round((runs[-1].tick - runs[0].covers_from) / step) + 1
    assert any(r.ticks > 1 for r in runs)  # the failover gap was covered by a coalesced run
    # No tick run twice: across every daemon's own log, each tick completed once.
    done = Counter(t for err in stderr.values() for t in _done_ticks(err))
    assert done and max(done.values()) == 1, done
    assert set(done) == {r.tick.isoformat() for r in runs}
    assert new_leader in survivors


def test_second_daemon_on_one_sqlite_database_is_refused(tmp_path: Path) -> None:
    proc, _port = start_daemon(tmp_path, SYNCD_CATALOG_PATH="")
    try:
        second = subprocess.run(
            [sys.executable, "-m", "syncd", "run", "--port", str(free_port())],
            env=syncd_env(tmp_path, SYNCD_CATALOG_PATH=""),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        code, _ = stop(proc)
    assert code == 0
    assert second.returncode == 1
    message = second.stderr.strip().splitlines()
    assert len(message) == 1, second.stderr
    assert "another syncd daemon is already running" in message[0]
    assert "use Postgres" in message[0]
