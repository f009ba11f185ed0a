"""The contract between the HTTP layer and the resource modules.

A resource module exports ``ROUTES``: a list of :class:`ApiRoute` whose handlers take
the emulator and an :class:`ApiCall` and return the JSON to send. Handlers run under
the emulator lock; the HTTP layer (:mod:`.app`) does authentication, fault injection,
idempotency, ``expand[]`` and error rendering.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .forms import Params
from .store import JSON

if TYPE_CHECKING:
    from .emulator import Emulator

__all__ = ["ApiCall", "ApiRoute", "Handler", "retrieve"]


@dataclass
class ApiCall:
    method: str
    path: str
    path_params: dict[str, str]
    data: dict[str, Any]

    def params(self, allowed: Iterable[str] | None = None) -> Params:
        return Params(self.data, allowed)

    def arg(self, name: str) -> str:
        return self.path_params[name]


Handler = Callable[["Emulator", ApiCall], JSON]


@dataclass(frozen=True)
class ApiRoute:
    method: str
    path: str
    handler: Handler


def retrieve(kind: str) -> Handler:
    """A handler that renders the object of ``kind`` named by the ``{id}`` path segment."""

    def handler(emu: Emulator, call: ApiCall) -> JSON:
        call.params(())
        return emu.render(emu.store.get(kind, call.arg("id")))

    return handler
