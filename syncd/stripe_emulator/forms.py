"""Decoding of Stripe's bracketed form encoding, and typed parameter access.

stripe-python sends ``application/x-www-form-urlencoded`` bodies (and query strings for
GET) with nested keys: ``items[0][price]=price_1``, ``metadata[plan]=pro``,
``expand[0]=customer`` or ``expand[]=customer``. :func:`decode_pairs` turns those
pairs back into nested dicts and lists; :class:`Params` gives typed, validated access
that raises Stripe-shaped 400 errors.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from .errors import invalid_param, missing_param, unknown_param

__all__ = ["Params", "apply_metadata", "decode_pairs", "parse_key"]

_KEY_RE = re.compile(r"\[([^\[\]]*)\]")


def parse_key(key: str) -> list[str]:
    """Split ``a[b][0][]`` into ``["a", "b", "0", ""]``."""
    head, _, rest = key.partition("[")
    if not rest:
        return [key]
    return [head, *_KEY_RE.findall("[" + rest)]


def _listify(node: Any) -> Any:
    if isinstance(node, dict):
        converted = {k: _listify(v) for k, v in node.items()}
        if converted and all(isinstance(k, int) for k in converted):
            return [converted[k] for k in sorted(converted)]
        if converted and all(isinstance(k, str) and k.isdigit() for k in converted):
            return [converted[k] for k in sorted(converted, key=int)]
        return converted
    return node


def decode_pairs(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Decode form/query pairs with bracketed keys into nested dicts and lists."""
    root: dict[Any, Any] = {}
    counters: dict[int, int] = {}
    for key, value in pairs:
        parts = parse_key(key)
        node: dict[Any, Any] = root
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            seg: Any = part
            if part == "":
                # ``[]``: a new list element for leaves; for nested keys, reuse the
                # newest element unless it already has the next key (Rails-style).
                n = counters.get(id(node), 0)
                if not last and n > 0:
                    prev = node.get(n - 1)
                    if isinstance(prev, dict) and parts[i + 1] not in prev:
                        seg = n - 1
                    else:
                        seg = n
                        counters[id(node)] = n + 1
                else:
                    seg = n
                    counters[id(node)] = n + 1
            if last:
                node[seg] = value
            else:
                child = node.get(seg)
                if not isinstance(child, dict):
                    child = {}
                    node[seg] = child
                node = child
    result = _listify(root)
    assert isinstance(result, dict)
    return result


_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


class Params:
    """Typed access to decoded request parameters.

    ``allowed`` lists the top-level names an endpoint accepts; anything else is a
    Stripe ``parameter_unknown`` error, which catches client typos early.
    """

    def __init__(
        self,
        data: Mapping[str, Any],
        allowed: Iterable[str] | None = None,
        prefix: str = "",
    ) -> None:
        self.data: dict[str, Any] = dict(data)
        self.prefix = prefix
        if allowed is not None:
            allowed_set = set(allowed) | {"expand"}
            for key in self.data:
                if key not in allowed_set:
                    raise unknown_param(self._name(key))

    def _name(self, key: str) -> str:
        return f"{self.prefix}[{key}]" if self.prefix else key

    def __contains__(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str) -> Any:
        return self.data.get(key)

    def string(self, key: str, default: str | None = None, *, required: bool = False) -> str | None:
        value = self.data.get(key)
        if value is None or value == "":
            if required:
                raise missing_param(self._name(key))
            return default
        if isinstance(value, (dict, list)):
            raise invalid_param(self._name(key), f"Invalid string: {self._name(key)}")
        return str(value)

    def req_string(self, key: str) -> str:
        value = self.string(key, required=True)
        assert value is not None
        return value

    def integer(self, key: str, default: int | None = None, *, required: bool = False) -> int | None:
        value = self.data.get(key)
        if value is None or value == "":
            if required:
                raise missing_param(self._name(key))
            return default
        if isinstance(value, bool):
            raise invalid_param(self._name(key), f"Invalid integer: {value}")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise invalid_param(self._name(key), f"Invalid integer: {value}") from None

    def number(self, key: str, default: float | None = None) -> float | None:
        value = self.data.get(key)
        if value is None or value == "":
            return default
        try:
            return float(value)
        except (TypeError, ValueError):
            raise invalid_param(self._name(key), f"Invalid number: {value}") from None

    def boolean(self, key: str, default: bool | None = None) -> bool | None:
        value = self.data.get(key)
        if value is None or value == "":
            return default
        if isinstance(value, bool):
            return value
        text = str(value).lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise invalid_param(self._name(key), f"Invalid boolean: {value}")

    def choice(self, key: str, choices: Iterable[str], default: str | None = None) -> str | None:
        value = self.string(key, default)
        options = list(choices)
        if value is not None and value not in options:
            raise invalid_param(
                self._name(key),
                f"Invalid {self._name(key)}: must be one of {', '.join(options)}",
            )
        return value

    def sub(self, key: str, allowed: Iterable[str] | None = None) -> Params | None:
        value = self.data.get(key)
        if value is None or value == "":
            return None
        if not isinstance(value, dict):
            raise invalid_param(self._name(key), f"Invalid object: {self._name(key)}")
        return Params(value, allowed, self._name(key))

    def array(self, key: str) -> list[Any]:
        value = self.data.get(key)
        if value is None or value == "":
            return []
        if isinstance(value, dict):  # a single unindexed object
            return [value]
        if not isinstance(value, list):
            return [value]
        return value

    def strings(self, key: str) -> list[str]:
        return [str(v) for v in self.array(key)]

    def objects(self, key: str, allowed: Iterable[str] | None = None) -> list[Params]:
        out: list[Params] = []
        allowed_list = None if allowed is None else list(allowed)
        for i, value in enumerate(self.array(key)):
            if not isinstance(value, dict):
                raise invalid_param(f"{self._name(key)}[{i}]", "Invalid object")
            out.append(Params(value, allowed_list, f"{self._name(key)}[{i}]"))
        return out

    def metadata(self, key: str = "metadata") -> dict[str, str] | None:
        """Metadata in Stripe form: ``""`` clears all, ``metadata[k]=""`` deletes ``k``.

        Returns None when absent, else a mapping where an empty value means delete.
        """
        if key not in self.data:
            return None
        value = self.data[key]
        if value == "" or value is None:
            return {}
        if not isinstance(value, dict):
            raise invalid_param(self._name(key), "Invalid metadata: must be an object")
        return {str(k): "" if v is None else str(v) for k, v in value.items()}


def apply_metadata(current: dict[str, str], update: dict[str, str] | None, raw: Any) -> None:
    """Merge a :meth:`Params.metadata` update into ``current`` in place."""
    if update is None:
        return
    if raw == "" or raw is None:
        current.clear()
        return
    for key, value in update.items():
        if value == "":
            current.pop(key, None)
        else:
            current[key] = value
