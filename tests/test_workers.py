"""`syncd run` with `[server] workers = 2`: one socket, two serving processes, graceful stop."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import time
from pathlib import Path

import httpx

from syncd.workers import bind_socket

from .cli_helpers import run_cli, syncd_env
from .test_daemon import start_daemon, stop


def ready_pid(port: int) -> int:
    # A fresh connection per call, so the kernel may hand it to either worker.
    with httpx.Client(timeout=5) as client:
        response = client.get(f"http://127.0.0.1:{port}/ready")
    assert response.status_code == 200
    return int(response.json()["pid"])


def pids_answering(port: int, want: int, timeout: float = 30) -> set[int]:
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    while len(seen) < want and time.monotonic() < deadline:
        seen.add(ready_pid(port))
    return seen


def events(stderr: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def test_two_workers_serve_restart_after_a_crash_and_drain_on_sigterm(tmp_path: Path) -> None:
    proc, port = start_daemon(tmp_path, SYNCD_SERVER_WORKERS="2")
    try:
        workers = pids_answering(port, 2)
        assert len(workers) == 2 and proc.pid not in workers
        # A crashed worker is replaced; the other keeps serving meanwhile.
        crashed = workers.pop()
        os.kill(crashed, signal.SIGKILL)
        replaced = pids_answering(port, 2) - workers
        assert len(replaced) == 1 and crashed not in replaced
    finally:
        code, stderr = stop(proc)
    assert code == 0, stderr
    log = events(stderr)
    names = [e["event"] for e in log]
    assert names.count("daemon_listening") == 3  # two workers, then the replacement
    assert {e["port"] for e in log if e["event"] == "daemon_listening"} == {port}
    assert names.count("daemon_stopped") == 2  # both live workers drained
    assert names.count("stripe_emulator_started") == 1  # in the supervisor only
    exited = [e for e in log if e["event"] == "worker_exited"]
    assert [e["pid"] for e in exited] == [crashed]
    assert names[-1] == "supervisor_stopped"


def test_zero_workers_is_a_configuration_error(tmp_path: Path) -> None:
    result = run_cli("run", env=syncd_env(tmp_path, SYNCD_SERVER_WORKERS="0"))
    assert result.returncode == 2
    assert "server.workers" in result.stderr and "SYNCD_SERVER_WORKERS" in result.stderr


def test_connections_accepted_on_the_shared_socket_have_nagle_off() -> None:
    """Without TCP_NODELAY every keep-alive response waits ~40 ms for a delayed ACK."""

    async def accepted_nodelay() -> int:
        sock = bind_socket("127.0.0.1", 0)
        seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            conn = writer.get_extra_info("socket")
            seen.set_result(conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(on_connect, sock=sock)
        _, writer = await asyncio.open_connection(*sock.getsockname())
        try:
            return await asyncio.wait_for(seen, 5)
        finally:
            writer.close()
            server.close()

    assert asyncio.run(accepted_nodelay()) != 0
