"""A real syncd (``Daemon`` + its app under uvicorn on a loopback port) per module, on SQLite and Postgres.

Tests drive it through the official ``schematichq`` SDK (``sdk`` fixture, secret key) and
raw httpx (``http`` fixture). State is shared inside a module, so tests create their own
uniquely named entities with :func:`unique`.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import uvicorn
from pydantic import SecretStr
from schematic.client import Schematic, SchematicConfig
from schematic.core.request_options import RequestOptions
from sqlalchemy import func, literal, select, text, union_all
from sqlmodel import SQLModel

from syncd.api import create_app
from syncd.apikeys import create_key
from syncd.config import CatalogSettings, DatabaseSettings, SchedulerSettings, Settings
from syncd.daemon import Daemon
from syncd.db import session_scope
from syncd.services.changes import Changed

from ..conftest import PG_ADMIN_URL, _pg_admin, free_port, unavailable

KINDS = ("secret", "readonly", "publishable")
NO_RETRY: RequestOptions = {"max_retries": 0}


def unique(prefix: str = "t") -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


@dataclass
class ApiServer:
    daemon: Daemon
    base_url: str
    keys: dict[str, str]
    backend: str
    changes: list[Changed] = field(default_factory=list)
    _clients: list[Schematic] = field(default_factory=list)

    def sdk(self, kind: str = "secret") -> Schematic:
        client = Schematic(self.keys[kind], SchematicConfig(base_url=self.base_url))
        self._clients.append(client)
        return client

    def http(self, kind: str | None = "secret") -> httpx.Client:
        headers = {"X-Schematic-Api-Key": self.keys[kind]} if kind else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30)

    def table_counts(self) -> dict[str, int]:
        """Row count of every table: equal before and after a refused request."""
        counts = union_all(
            *(select(literal(t.name), func.count()).select_from(t) for t in SQLModel.metadata.sorted_tables)
        )
        with self.daemon.engine.connect() as conn:
            return {name: count for name, count in conn.execute(counts)}

    def close(self) -> None:
        for client in self._clients:
            client.shutdown()


def _database(backend: str, tmp: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp / 'syncd.db'}"
        return
    admin = _pg_admin()
    try:
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        unavailable("PostgreSQL", str(exc).splitlines()[0])
    name = f"syncd_api_{secrets.token_hex(6)}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def start_server(url: str, backend: str, catalog: str | None = None) -> tuple[ApiServer, Callable[[], None]]:
    settings = Settings(
        database=DatabaseSettings(url=SecretStr(url)),
        catalog=CatalogSettings(path=catalog),
        scheduler=SchedulerSettings(enabled=False),
    )
    daemon = Daemon(settings)
    daemon.prepare()
    keys: dict[str, str] = {}
    with session_scope(daemon.engine) as session:
        for kind in KINDS:
            keys[kind] = create_key(session, kind, name=f"test-{kind}")[1]
    port = free_port()
    app = create_app(daemon)
    changes: list[Changed] = []
    app.state.entitlements_listeners.append(changes.append)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="off"
    )
    uvicorn_server = uvicorn.Server(config)
    thread = threading.Thread(target=uvicorn_server.run, daemon=True)
    thread.start()
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or not thread.is_alive():
            raise AssertionError("syncd did not start")
        time.sleep(0.05)
    server = ApiServer(daemon=daemon, base_url=base_url, keys=keys, backend=backend, changes=changes)

    def stop() -> None:
        server.close()
        uvicorn_server.should_exit = True
        thread.join(timeout=30)
        daemon.close()

    return server, stop


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    backend: str = request.param
    databases = _database(backend, tmp_path_factory.mktemp("api"))
    url = next(databases)
    server, stop = start_server(url, backend)
    try:
        yield server
    finally:
        stop()
        databases.close()


DEMO_CATALOG = str(Path(__file__).resolve().parents[2] / "config" / "catalog.toml")


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def demo_api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """A running syncd with the demo catalog (Free / Pro / Enterprise, metered API calls...)."""
    backend: str = request.param
    databases = _database(backend, tmp_path_factory.mktemp("demo"))
    server, stop = start_server(next(databases), backend, DEMO_CATALOG)
    try:
        yield server
    finally:
        stop()
        databases.close()


@pytest.fixture
def sdk(api: ApiServer) -> Schematic:
    return api.sdk("secret")


@pytest.fixture
def http(api: ApiServer) -> Iterator[httpx.Client]:
    with api.http("secret") as client:
        yield client
