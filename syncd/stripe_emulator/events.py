"""The event log: every mutation is recorded as a Stripe ``event``.

Events keep a snapshot of the object (``data.object``), ``data.previous_attributes``
for ``*.updated`` events, the API version, the request that caused them
(``request.id``/``request.idempotency_key``, both null for clock-driven changes) and
``pending_webhooks``. ``GET /v1/events`` lists newest first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .store import JSON

__all__ = ["EventLog", "diff_previous", "type_matcher"]


def diff_previous(before: JSON, after: JSON) -> JSON:
    """Stripe's ``previous_attributes``: old values of the keys that changed.

    Nested hashes (``metadata``, ``invoice_settings``…) are diffed recursively; lists
    and scalars are reported whole.
    """
    prev: JSON = {}
    for key, old in before.items():
        new = after.get(key)
        if old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict) and old.get("object") != "list":
            inner = diff_previous(old, new)
            for added in new:
                if added not in old:
                    inner[added] = None
            prev[key] = inner
        else:
            prev[key] = old
    for key in after:
        if key not in before:
            prev[key] = None
    return prev


def type_matcher(patterns: list[str]) -> Callable[[str], bool]:
    """Match event types against Stripe filters, which allow a ``*`` wildcard."""

    def match_one(pattern: str, etype: str) -> bool:
        if pattern == "*":
            return True
        if pattern.endswith(".*"):
            return etype.startswith(pattern[:-1])
        return pattern == etype

    return lambda etype: any(match_one(p, etype) for p in patterns)


class EventLog:
    """Events in creation order; ``by_id`` for retrieval."""

    def __init__(self) -> None:
        self.events: list[JSON] = []
        self.by_id: dict[str, JSON] = {}

    def clear(self) -> None:
        self.events.clear()
        self.by_id.clear()

    def add(self, event: JSON) -> None:
        self.events.append(event)
        self.by_id[event["id"]] = event

    def newest_first(self) -> list[JSON]:
        return list(reversed(self.events))

    def types(self) -> list[str]:
        return [e["type"] for e in self.events]

    def of_type(self, etype: str) -> list[JSON]:
        return [e for e in self.events if e["type"] == etype]


def event_object(
    *,
    ident: str,
    etype: str,
    created: int,
    obj: JSON,
    previous: JSON | None,
    api_version: str,
    request_id: str | None,
    idempotency_key: str | None,
    pending: int,
) -> JSON:
    data: dict[str, Any] = {"object": obj}
    if previous is not None:
        data["previous_attributes"] = previous
    return {
        "id": ident,
        "object": "event",
        "api_version": api_version,
        "created": created,
        "data": data,
        "livemode": False,
        "pending_webhooks": pending,
        "request": {"id": request_id, "idempotency_key": idempotency_key},
        "type": etype,
    }
