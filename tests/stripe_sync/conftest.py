"""Fixtures for Stripe -> syncd: one emulator per session (reset per test) and a ``world``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

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
