"""`syncd run` with SYNCD_REDIS_URL: the scheduler's publish job resyncs Redis at start and keeps
it current; `syncd adapters resync redis` rebuilds it from another process."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
import redis

from syncd.cli import main
from syncd.engine.wire import ENGINE_VERSION_KEY as V

from ..cli_helpers import syncd_env
from ..test_daemon import start_daemon, stop


def wait_for(check: object, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def test_running_daemon_publishes_to_redis_and_cli_resyncs(
    tmp_path: Path,
    redis_url: str,
    prefix: str,
    rclient: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = {"SYNCD_REDIS_URL": redis_url, "SYNCD_REDIS_KEY_PREFIX": prefix}
    proc, port = start_daemon(tmp_path, **env)
    try:
        wait_for(lambda: rclient.get(f"{prefix}:syncd:cache_version") == V)
        flag = json.loads(rclient.get(f"{prefix}:flags:{V}:new-dashboard") or "{}")
        assert flag["key"] == "new-dashboard" and flag["rules"]
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/ready").json()["cache_version"] == V
        # A change made outside the daemon's API (the CLI, another replica) arrives via change_log.
        rclient.delete(f"{prefix}:flags:{V}:sso")
        for key, value in syncd_env(tmp_path, **env).items():  # the CLI in-process: same config
            monkeypatch.setenv(key, value)
        assert main(["adapters", "resync", "redis"]) == 0
        assert capsys.readouterr().out.strip() == "resynced redis"
        assert rclient.exists(f"{prefix}:flags:{V}:sso")
        metrics = httpx.get(f"{base}/metrics").text
        assert 'syncd_adapter_cursor_lag{adapter="redis"} 0.0' in metrics
    finally:
        code, stderr = stop(proc)
    assert code == 0, stderr
    types = [fields["type"] for _id, fields in rclient.xrange(f"{prefix}:syncd:changes")]
    assert types.count("resync") >= 2  # start-up and the CLI
