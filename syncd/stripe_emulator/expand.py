"""``expand[]``: replace id strings in a response with the objects they name.

Paths are dotted (``latest_invoice``, ``items.data.price.product``, ``data.customer``
on lists). Each segment that lands on an id string is resolved through the emulator;
``data`` on a list applies the rest of the path to every element. Stripe allows at
most four levels.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .errors import StripeAPIError
from .store import JSON

__all__ = ["apply_expand"]

MAX_DEPTH = 4


def apply_expand(obj: JSON, paths: list[str], resolve: Callable[[str], JSON | None]) -> JSON:
    for path in paths:
        parts = [p for p in path.split(".") if p]
        if len([p for p in parts if p != "data"]) > MAX_DEPTH:
            raise StripeAPIError(
                400,
                f"You cannot expand more than {MAX_DEPTH} levels of a property. Property: {path}",
                param="expand",
            )
        _expand(obj, parts, path, resolve)
    return obj


def _expand(node: Any, parts: list[str], path: str, resolve: Callable[[str], JSON | None]) -> Any:
    if not parts:
        return node
    if isinstance(node, list):
        return [_expand(n, parts, path, resolve) for n in node]
    if not isinstance(node, dict):
        return node
    key, rest = parts[0], parts[1:]
    if key not in node:
        raise StripeAPIError(400, f"This property cannot be expanded ({path}).", param="expand")
    value = node[key]
    if key == "data" and isinstance(value, list):
        node[key] = [_expand(v, rest, path, resolve) for v in value]
        return node
    if isinstance(value, str):
        target = resolve(value)
        if target is None:
            raise StripeAPIError(400, f"This property cannot be expanded ({path}).", param="expand")
        value = target
    node[key] = _expand(value, rest, path, resolve)
    return node
