"""Postgres restarted under load: the daemon reconnects by itself and loses no accepted
request (every /events or /batch answered 2xx is counted afterwards, exactly once).

Postgres here is a PRIVATE instance (initdb in a temp dir, a free port, run as the
``postgres`` user); the shared server on 5432 is never touched.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from ..conftest import free_port, unavailable
from .conftest import DaemonProcess, secret_key, wait_until

BIN = Path("/usr/lib/postgresql/15/bin")
SENDERS = 4


class PrivatePostgres:
    def __init__(self) -> None:
        self.port = free_port()
        # Not under pytest's tmp_path: its parents are private to root, and postgres must enter.
        self.dir = Path(tempfile.mkdtemp(prefix="syncd-faults-pg-"))
        self.dir.chmod(0o755)
        shutil.chown(self.dir, "postgres", "postgres")
        self.data = self.dir / "data"
        self._pg("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        conf = f"port = {self.port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{self.dir}'\n"
        conf += "fsync = off\nmax_connections = 100\n"
        with (self.data / "postgresql.conf").open("a") as f:
            f.write(conf)

    def _pg(self, tool: str, *args: str) -> None:
        done = subprocess.run(
            ["runuser", "-u", "postgres", "--", str(BIN / tool), *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, f"{tool}: {done.stdout}{done.stderr}"

    def start(self) -> None:
        self._pg("pg_ctl", "-D", str(self.data), "-l", str(self.dir / "log"), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._pg("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    @property
    def admin_url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def create_database(self, name: str) -> str:
        engine = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        engine.dispose()
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def destroy(self) -> None:
        with contextlib.suppress(AssertionError):
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    if not (BIN / "initdb").exists() or shutil.which("runuser") is None:
        unavailable("PostgreSQL 15 binaries", f"{BIN} or runuser missing")
    server = PrivatePostgres()
    server.start()
    yield server
    server.destroy()


class Load:
    """Senders posting track events (half /events, half /batch), each retried with the same
    idempotency key until it gets a 2xx, as the SDKs do."""

    def __init__(self, url: str, key: str) -> None:
        self.url, self.key = url, key
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.accepted: list[str] = []
        self.errors: Counter[str] = Counter()

    def _send(self, http: httpx.Client, n: int) -> None:
        idem = str(uuid.uuid4())
        body = {"event": "api-call", "company": {"tenant": "acme"}, "quantity": 1}
        while True:
            try:
                if n % 2:
                    answer = http.post(
                        "/events", json={"event_type": "track", "body": body, "idempotency_key": idem}
                    )
                else:
                    event = {"type": "track", "body": body, "idempotency_key": idem}
                    answer = http.post("/batch", json={"events": [event]})
                if answer.is_success:
                    with self.lock:
                        self.accepted.append(idem)
                    return
                assert answer.status_code >= 500, answer.text  # never a 4xx for a good event
                with self.lock:
                    self.errors[str(answer.status_code)] += 1
            except httpx.TransportError as exc:
                with self.lock:
                    self.errors[type(exc).__name__] += 1
            time.sleep(0.05)

    def worker(self, k: int) -> None:
        with httpx.Client(base_url=self.url, headers={"X-Schematic-Api-Key": self.key}, timeout=10) as http:
            n = k
            while not self.stop.is_set():
                self._send(http, n)
                n += SENDERS


def test_postgres_restart_under_load_loses_no_accepted_request(
    private_postgres: PrivatePostgres, tmp_path: Path, soak: bool
) -> None:
    url = private_postgres.create_database("syncd")
    daemon = DaemonProcess(tmp_path, SYNCD_DATABASE_URL=url).start()  # demo catalog: api-calls
    try:
        key = secret_key(url)
        made = httpx.post(
            f"{daemon.url}/companies",
            json={"keys": {"tenant": "acme"}, "name": "Acme"},
            headers={"X-Schematic-Api-Key": key},
        )
        assert made.status_code == 200, made.text
        load = Load(daemon.url, key)
        threads = [threading.Thread(target=load.worker, args=(k,)) for k in range(SENDERS)]
        for t in threads:
            t.start()
        restarts = 3 if soak else 1
        for _ in range(restarts):
            time.sleep(10 if soak else 1.5)  # load against a healthy database
            before = len(load.accepted)
            private_postgres.stop("fast")  # terminates every connection the daemon holds
            time.sleep(5 if soak else 1)
            private_postgres.start()
            wait_until(
                lambda b=before: len(load.accepted) > b + 20, 30, "accepted requests after the restart"
            )
        time.sleep(1)
        load.stop.set()
        for t in threads:
            t.join(timeout=60)
        assert daemon.alive(), daemon.tail()
        assert httpx.get(f"{daemon.url}/ready", timeout=5).status_code == 200

        engine = create_engine(url)
        with engine.connect() as conn:
            stored = Counter(
                r[0]
                for r in conn.execute(
                    text("SELECT idempotency_key FROM usage_event WHERE event_subtype = 'api-call'")
                )
            )
        engine.dispose()
        print(
            f"{len(load.accepted)} requests accepted across {restarts} Postgres restart(s); "
            f"failed attempts retried: {dict(load.errors)}"
        )
        assert load.errors  # the restart was felt by the clients
        missing = set(load.accepted) - set(stored)
        assert not missing, f"{len(missing)} accepted request(s) lost"
        assert set(stored.values()) == {1}  # and no retry was counted twice
    finally:
        assert daemon.stop() == 0, daemon.tail()
