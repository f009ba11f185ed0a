"""Multi-process safety: a replica used across fork, and the example app under real uvicorn
with 2 workers fed from Redis."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path

import httpx
import pytest

from syncd_asgi import RedisReplica, UsageTracker
from tests.adapters.asgi_support import Receiver, Writer, company, prefix, wait_for
from tests.conftest import free_port

pytestmark = pytest.mark.redis
ROOT = Path(__file__).resolve().parents[2]
FREE = {"id": "freebie"}


@pytest.fixture
def writer(redis_url: str) -> Iterator[Writer]:
    w = Writer(redis_url, prefix())
    w.seed()
    yield w
    w.cleanup()


def _child(rep: RedisReplica, tracker: UsageTracker, conn: Connection) -> None:
    try:
        first = rep.check(FREE, None, "sso")
        # The inherited copy answers at once (stale until this process's own feed loads).
        conn.send(("first", None if first is None else first.value))
        tracker.track(FREE, None, "api-call")  # the parent's buffered event must not be resent here
        ok = rep.wait_ready(5)
        feeds = [t.name for t in threading.enumerate() if t.name == "syncd-replica"]
        conn.send(("ready", ok, rep.reloads, len(feeds)))
        conn.recv()  # the parent has changed the data
        wait_for(lambda: rep.check(FREE, None, "sso").value, timeout=5)  # type: ignore[union-attr]
        tracker.close()
        conn.send(("changed", True, tracker.sent))
    except Exception as exc:  # report instead of dying silently
        conn.send(("error", repr(exc)))


def test_replica_and_tracker_restart_in_a_forked_child(writer: Writer, redis_url: str) -> None:
    receiver = Receiver()
    rep = RedisReplica(redis_url, prefix=writer.p, block_seconds=0.2)
    tracker = UsageTracker(receiver.url, "k", replica=rep, flush_interval=3600, tick=3600)
    try:
        assert rep.wait_ready(5)
        tracker.track(FREE, None, "api-call")  # buffered in the parent when the fork happens
        parent_end, child_end = multiprocessing.Pipe()
        proc = multiprocessing.get_context("fork").Process(target=_child, args=(rep, tracker, child_end))
        proc.start()
        assert parent_end.poll(10)
        assert parent_end.recv() == ("first", False)
        assert parent_end.poll(10)
        # The child loaded its own copy with its own (single) feed thread.
        assert parent_end.recv() == ("ready", True, 2, 1)
        writer.put_company(company("co_free", "freebie", "pro"))
        parent_end.send("go")
        assert parent_end.poll(10)
        assert parent_end.recv() == ("changed", True, 1)  # only the child's own event
        proc.join(5)
        assert proc.exitcode == 0
        # The parent is untouched and still following.
        wait_for(lambda: rep.check(FREE, None, "sso").value, timeout=3)  # type: ignore[union-attr]
        assert rep.reloads == 1
        tracker.flush()
        assert tracker.sent == 1
        assert len(receiver.events) == 2
    finally:
        tracker.close()
        rep.close()
        receiver.close()


def test_example_app_under_uvicorn_with_two_workers(writer: Writer, redis_url: str) -> None:
    receiver = Receiver()
    port = free_port()
    env = {
        **os.environ,
        "SYNCD_EXAMPLE_REDIS_URL": redis_url,
        "SYNCD_EXAMPLE_PREFIX": writer.p,
        "SYNCD_EXAMPLE_SYNCD_URL": receiver.url,
        "SYNCD_EXAMPLE_API_KEY": "sk_example",
    }
    cmd = [sys.executable, "-m", "uvicorn", "examples.host_app.main:app", "--workers", "2"]
    cmd += ["--port", str(port), "--log-level", "warning", "--no-access-log"]
    server = subprocess.Popen(cmd, cwd=ROOT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        pids: dict[int, bool] = {}

        def sso_by_worker() -> bool:
            # A fresh connection per request so the kernel spreads them over both workers.
            try:
                pid = httpx.get(f"{base}/", timeout=2).json()["pid"]
                status = httpx.get(f"{base}/sso", headers={"x-company-key": "freebie"}, timeout=2).status_code
            except httpx.TransportError:
                return False
            pids[pid] = status == 200
            return len(pids) == 2

        wait_for(sso_by_worker, timeout=20, interval=0.05)
        assert set(pids.values()) == {False}  # every worker loaded the data: freebie has no sso
        writer.put_company(company("co_free", "freebie", "pro"))
        pids.clear()
        wait_for(lambda: sso_by_worker() and all(pids.values()), timeout=10, interval=0.02)
        for _ in range(4):
            response = httpx.post(f"{base}/query", headers={"x-company-key": "acme"}, timeout=2)
            assert response.status_code in (200, 402)
        wait_for(lambda: len(receiver.events) >= 1, timeout=5)
        assert receiver.events[0]["api_key"] == "sk_example"
    finally:
        server.terminate()
        server.wait(10)
        receiver.close()
