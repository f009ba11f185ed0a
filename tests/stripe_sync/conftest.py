"""Fixtures for Stripe -> syncd: one emulator per session (reset per test) and a ``world``."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from syncd import migrate
from syncd.db import make_engine
from syncd.stripe_emulator import BackgroundServer, EmulatorConfig

from .harness import World

#: 2026-01-01T00:00:00Z: the emulator clock starts here.
START = 1_767_225_600


@pytest.fixture(scope="session")
def _emulator() -> Iterator[BackgroundServer]:
    config = EmulatorConfig(start_time=START, seed=7, auto_deliver=False, webhook_secret="whsec_sync_tests")
    with BackgroundServer(config) as server:
        yield server


@pytest.fixture
def emulator(_emulator: BackgroundServer) -> BackgroundServer:
    httpx.post(f"{_emulator.url}/_emulator/reset").raise_for_status()
    return _emulator


@pytest.fixture(scope="session")
def _migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated once per session; tests start from a copy (migrating is slow)."""
    path = tmp_path_factory.mktemp("template") / "syncd.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture
def sqlite_url(_migrated_sqlite: Path, tmp_path: Path) -> str:
    target = tmp_path / "syncd.db"
    shutil.copyfile(_migrated_sqlite, target)
    return f"sqlite:///{target}"


@pytest.fixture
def world(emulator: BackgroundServer, sqlite_url: str, tmp_path: Path) -> Iterator[World]:
    w = World(emulator, sqlite_url, tmp_path)
    yield w
    w.close()


@pytest.fixture
def pg_world(emulator: BackgroundServer, postgres_url: str, tmp_path: Path) -> Iterator[World]:
    w = World(emulator, postgres_url, tmp_path)
    yield w
    w.close()
