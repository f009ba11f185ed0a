"""Which routes need which feature: the ``requires_feature`` decorator, config rules, and the
per-(method, path) resolution the middleware caches.

Decorated endpoints are found through the app's own route table (Starlette ``Route``,
``Mount``, ``Host``, function endpoints and ``HTTPEndpoint`` classes or their methods), matched
exactly as the router will match them. Config rules (``GateRule``: a path template such as
``/reports/{id}`` plus methods) work with any ASGI framework and are tried first.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from starlette.routing import BaseRoute, Match, compile_path
from starlette.types import Scope

GATE_ATTR = "__syncd_gate__"
FailMode = Literal["open", "closed"]
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class Gate:
    """A route's requirement: the flag that must be on for the caller.

    ``event``: a metered route; each successful (2xx) response tracks ``quantity`` of it.
    ``fail``: what to do when no decision is possible (no data yet, unknown flag): "closed"
    answers 503, "open" lets the request through.
    """

    feature: str
    event: str | None = None
    quantity: int = 1
    fail: FailMode = "closed"

    def __post_init__(self) -> None:
        if self.fail not in ("open", "closed"):
            raise ValueError(f"fail must be 'open' or 'closed', not {self.fail!r}")
        if self.quantity < 1:
            raise ValueError("quantity must be at least 1")


def requires_feature(
    feature: str, *, event: str | None = None, quantity: int = 1, fail: FailMode = "closed"
) -> Callable[[F], F]:
    """Mark an endpoint (function, ``HTTPEndpoint`` class or one of its methods) as gated."""
    gate = Gate(feature, event, quantity, fail)

    def mark(endpoint: F) -> F:
        setattr(endpoint, GATE_ATTR, gate)
        return endpoint

    return mark


@dataclass(frozen=True, slots=True)
class GateRule:
    """A gate by configuration: a path template (Starlette syntax, matched against the whole
    request path) and optional methods (GET implies HEAD)."""

    path: str
    gate: Gate
    methods: frozenset[str] | None = None

    @classmethod
    def of(
        cls,
        path: str,
        feature: str,
        *,
        methods: Iterable[str] | None = None,
        event: str | None = None,
        quantity: int = 1,
        fail: FailMode = "closed",
    ) -> GateRule:
        upper = None if methods is None else {m.upper() for m in methods}
        if upper is not None and "GET" in upper:
            upper.add("HEAD")  # servers answer HEAD with the GET handler: gate it the same way
        return cls(path, Gate(feature, event, quantity, fail), None if upper is None else frozenset(upper))


def _endpoint_gate(endpoint: Any, method: str) -> Gate | None:
    if isinstance(endpoint, type):
        # HTTPEndpoint: a gate on the handler method wins over one on the class.
        handler = getattr(endpoint, "get" if method == "HEAD" else method.lower(), None)
        found = getattr(handler, GATE_ATTR, None)
        if isinstance(found, Gate):
            return found
    found = getattr(endpoint, GATE_ATTR, None)
    return found if isinstance(found, Gate) else None


def _route_gate(routes: Sequence[BaseRoute], scope: Scope) -> Gate | None:
    for route in routes:
        match, child = route.matches(scope)
        if match != Match.FULL:
            continue  # a method mismatch (PARTIAL) ends in 405: nothing to gate
        inner = getattr(route, "routes", None)
        if inner is not None:
            # Mount / Host: continue matching inside with the scope the router would pass.
            return _route_gate(inner, {**scope, **child})
        return _endpoint_gate(child.get("endpoint"), scope["method"])
    return None


def find_routes(app: Any) -> Sequence[BaseRoute] | None:
    """The route table under a middleware chain (``.app`` links), if there is one."""
    for _ in range(32):
        if app is None:
            return None
        routes = getattr(app, "routes", None)
        if isinstance(routes, list | tuple):
            return routes
        app = getattr(app, "app", None)
    return None


_MISS: Any = object()


class GateTable:
    """(method, path) -> Gate | None, computed once per distinct request line and cached.

    ``by_path`` holds, per path, the last method resolved on it and its gate: the request
    path looks it up with one hash of a fresh string, and the method is compared rather than
    hashed (a tuple key would build, hash and compare a tuple per request). Other methods on
    the same path go through ``resolve``, which remembers every (method, path) it has seen.
    """

    MAX_CACHED = 10_000

    def __init__(self, rules: Iterable[GateRule] = (), routes: Sequence[BaseRoute] | None = None) -> None:
        self._rules: list[tuple[re.Pattern[str], frozenset[str] | None, Gate]] = [
            (compile_path(r.path)[0], r.methods, r.gate) for r in rules
        ]
        self.routes = routes
        self.by_path: dict[str, tuple[str, Gate | None]] = {}
        self._seen: dict[tuple[str, str], Gate | None] = {}

    def resolve(self, scope: Scope) -> Gate | None:
        method, path = scope["method"], scope["path"]
        found = self._seen.get((method, path), _MISS)
        if found is not _MISS:
            gate: Gate | None = found
        else:
            gate = self._resolve(scope)
            if len(self._seen) >= self.MAX_CACHED:
                # Paths with parameters make the key space open-ended; start over rather than grow.
                self._seen.clear()
                self.by_path.clear()
            self._seen[method, path] = gate
        self.by_path[path] = (method, gate)
        return gate

    def _resolve(self, scope: Scope) -> Gate | None:
        path, method = scope["path"], scope["method"]
        for pattern, methods, gate in self._rules:
            if (methods is None or method in methods) and pattern.match(path):
                return gate
        if self.routes:
            return _route_gate(self.routes, scope)
        return None
