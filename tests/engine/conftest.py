"""Shared fixtures for the engine tests."""

from __future__ import annotations

import freezegun
import pytest

from tests.engine._wasm import WasmOracle, oracle

# freezegun walks every loaded module's attributes when it starts; the schematic SDK builds
# pydantic models lazily on attribute access, which fails while datetime is faked.
freezegun.configure(extend_ignore_list=["schematic", "wasmtime"])


@pytest.fixture(scope="session")
def wasm() -> WasmOracle:
    """The official WASM engine, instantiated once per session."""
    return oracle()
