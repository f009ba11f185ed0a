"""The official rules engine (schematichq's WASM build) as a test oracle.

Drives ``schematic.datastream.rules_engine.RulesEngineClient`` through its own envelope code
path, with one change: the clock it feeds the module (``setCurrentTimeMillis``) is pinned to
the case's ``now`` instead of the wall clock, so both engines evaluate at the same instant.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any

from schematic.datastream.rules_engine import (
    RulesEngineClient,
    _deep_camel_to_snake,
    _strip_none,
)

from syncd.engine.wire import Company, Flag, Preflight, User


class WasmOracle:
    def __init__(self) -> None:
        self._client = RulesEngineClient()
        asyncio.run(self._client.initialize())
        real_set_time = self._client._set_time_fn
        self._now_ms = 0

        def pinned(store: Any, _wall_ms: int) -> Any:
            return real_set_time(store, self._now_ms)

        self._client._set_time_fn = pinned

    @property
    def version_key(self) -> str:
        return self._client.get_version_key()

    def check_raw(self, envelope: dict[str, Any], now: dt.datetime) -> dict[str, Any] | None:
        """Evaluate a raw envelope; ``None`` when the engine returns an error code."""
        self._now_ms = int(now.timestamp() * 1000)
        try:
            out = self._client._call_wasm(json.dumps(_strip_none(envelope)))
        except RuntimeError:
            return None
        result: dict[str, Any] = _deep_camel_to_snake(json.loads(out))
        return result

    def check(
        self,
        flag: Flag,
        company: Company | None,
        user: User | None,
        preflight: Preflight | None,
        now: dt.datetime,
    ) -> dict[str, Any] | None:
        envelope: dict[str, Any] = {
            "flag": flag.to_wire(),
            "company": None if company is None else company.to_wire(),
            "user": None if user is None else user.to_wire(),
        }
        if preflight is not None:
            options = preflight.to_wire()
            if options:
                envelope["options"] = options
        return self.check_raw(envelope, now)


_ORACLE: WasmOracle | None = None


def oracle() -> WasmOracle:
    """One engine instance per test session: instantiating the module is the expensive part."""
    global _ORACLE
    if _ORACLE is None:
        _ORACLE = WasmOracle()
    return _ORACLE
