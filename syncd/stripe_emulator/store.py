"""In-memory object storage.

Objects are Stripe-shaped ``dict``s keyed by id. Keys starting with ``_`` are the
emulator's private bookkeeping (billing anchors, timers) and are stripped when an
object is rendered. The store itself is not locked: :class:`~.emulator.Emulator`
serialises every access under its state lock.
"""

from __future__ import annotations

from typing import Any

from .errors import not_found

__all__ = ["JSON", "Store", "public"]

JSON = dict[str, Any]

# Human names used in Stripe's "No such X" messages.
_NAMES = {
    "billing.meter": "billing meter",
    "subscription_schedule": "subscription schedule",
    "subscription_item": "subscription item",
    "webhook_endpoint": "webhook endpoint",
    "test_helpers.test_clock": "test clock",
    "payment_method": "PaymentMethod",
    "invoiceitem": "invoice item",
}


def public(obj: JSON) -> JSON:
    """A deep copy of ``obj`` without private ``_`` keys."""

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if not k.startswith("_")}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    result = strip(obj)
    assert isinstance(result, dict)
    return result


class Store:
    """Objects by id, plus per-kind creation order."""

    def __init__(self) -> None:
        self.objects: dict[str, JSON] = {}
        self._order: dict[str, dict[str, None]] = {}

    def clear(self) -> None:
        self.objects.clear()
        self._order.clear()

    def add(self, obj: JSON) -> JSON:
        ident = obj["id"]
        self.objects[ident] = obj
        self._order.setdefault(obj["object"], {})[ident] = None
        return obj

    def find(self, ident: str) -> JSON | None:
        return self.objects.get(ident)

    def get(self, kind: str, ident: str, param: str = "id") -> JSON:
        obj = self.objects.get(ident)
        if obj is None or obj["object"] != kind:
            raise not_found(_NAMES.get(kind, kind), ident, param)
        return obj

    def remove(self, ident: str) -> None:
        obj = self.objects.pop(ident, None)
        if obj is not None:
            self._order.get(obj["object"], {}).pop(ident, None)

    def all(self, kind: str) -> list[JSON]:
        """Objects of ``kind`` in creation order (oldest first)."""
        return [self.objects[i] for i in self._order.get(kind, {})]

    def newest_first(self, kind: str) -> list[JSON]:
        return list(reversed(self.all(kind)))
