"""Stripe list objects and cursor pagination.

``{"object": "list", "data": [...], "has_more": bool, "url": "/v1/..."}`` with
``limit`` (1-100, default 10), ``starting_after``/``ending_before`` cursors and
``created`` range filters (``created=ts`` or ``created[gt|gte|lt|lte]=ts``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .errors import invalid_param
from .forms import Params
from .store import JSON

__all__ = ["created_filter", "list_object", "paginate"]

LIST_PARAMS = ("limit", "starting_after", "ending_before", "created")


def list_object(data: list[JSON], url: str, has_more: bool = False) -> JSON:
    return {"object": "list", "data": data, "has_more": has_more, "url": url}


def created_filter(params: Params, field: str = "created") -> Callable[[JSON], bool]:
    raw = params.raw(field)
    if raw is None or raw == "":
        return lambda _obj: True
    if not isinstance(raw, dict):
        exact = params.integer(field)
        return lambda obj: obj.get(field) == exact
    bounds = Params(raw, ("gt", "gte", "lt", "lte"), field)
    gt, gte = bounds.integer("gt"), bounds.integer("gte")
    lt, lte = bounds.integer("lt"), bounds.integer("lte")

    def check(obj: JSON) -> bool:
        value = obj.get(field)
        if not isinstance(value, int):
            return False
        return not (
            (gt is not None and value <= gt)
            or (gte is not None and value < gte)
            or (lt is not None and value >= lt)
            or (lte is not None and value > lte)
        )

    return check


def paginate(
    items: Sequence[JSON],
    params: Params,
    url: str,
    render: Callable[[JSON], JSON],
    *,
    max_limit: int = 100,
) -> JSON:
    """Paginate ``items`` (already filtered and in the list's order)."""
    limit = params.integer("limit", 10)
    assert limit is not None
    if limit < 1 or limit > max_limit:
        raise invalid_param(
            "limit", f"Invalid limit: must be between 1 and {max_limit}", "parameter_invalid_integer"
        )
    after = params.string("starting_after")
    before = params.string("ending_before")
    ids = [obj["id"] for obj in items]
    if after is not None:
        if after not in ids:
            raise invalid_param("starting_after", f"No such object: '{after}'", "resource_missing")
        start = ids.index(after) + 1
        page = list(items[start : start + limit])
        has_more = start + limit < len(items)
    elif before is not None:
        if before not in ids:
            raise invalid_param("ending_before", f"No such object: '{before}'", "resource_missing")
        end = ids.index(before)
        start = max(0, end - limit)
        page = list(items[start:end])
        has_more = start > 0
    else:
        page = list(items[:limit])
        has_more = len(items) > limit
    return list_object([render(obj) for obj in page], url, has_more)


def filter_eq(items: Sequence[JSON], params: Params, *fields: str) -> list[JSON]:
    """Keep objects whose ``field`` equals the string parameter of the same name."""
    out = list(items)
    for field in fields:
        value: Any = params.string(field)
        if value is not None:
            out = [o for o in out if _as_id(o.get(field)) == value]
    return out


def _as_id(value: Any) -> Any:
    if isinstance(value, dict):
        return value.get("id")
    return value
