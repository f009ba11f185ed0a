"""Idempotency keys: replay the stored response, refuse reuse with other parameters.

As on Stripe, a POST's ``Idempotency-Key`` stores the first result; the same key
with the same method, path and parameters replays it (with ``Idempotent-Replayed:
true``), and with different ones answers 400 ``idempotency_error``. Validation
errors (4xx other than 402) are not stored, so a corrected request can reuse a key.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

from .errors import StripeAPIError

__all__ = ["IdempotencyCache", "StoredResponse", "fingerprint"]


def fingerprint(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class StoredResponse:
    method: str
    path: str
    fingerprint: str
    status: int
    body: bytes
    headers: dict[str, str]


class IdempotencyCache:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[str, StoredResponse] = {}

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def lookup(self, key: str, method: str, path: str, fp: str) -> StoredResponse | None:
        with self._lock:
            stored = self._items.get(key)
        if stored is None:
            return None
        if stored.method != method or stored.path != path or stored.fingerprint != fp:
            raise StripeAPIError(
                400,
                "Keys for idempotent requests can only be used with the same parameters "
                f"they were first used with. Try using a key other than '{key}' if you "
                "meant to execute a different request.",
                type="idempotency_error",
            )
        return stored

    def save(self, key: str, response: StoredResponse) -> None:
        if 400 <= response.status < 500 and response.status != 402:
            return
        with self._lock:
            self._items.setdefault(key, response)
