"""Payload JSON: what is stored in the delivery log is exactly what is sent."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot serialize {type(value).__name__} in a webhook payload")


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON data (datetimes as ISO 8601), as stored and sent."""
    return json.loads(json.dumps(value, default=_default))


def encode(payload: Any) -> bytes:
    """The exact request body sent for a stored payload (also what the event log shows)."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
