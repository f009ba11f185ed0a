"""Stripe's test-clock API (``/v1/test_helpers/test_clocks``) over the emulator clock.

The emulator has a single clock. Test clocks are views of it: every clock reports
the emulator's current time as ``frozen_time``, and advancing any clock advances the
emulator (and so every subscription), which is the simplification to keep in mind.
Advancing is synchronous: the clock is ``ready`` again when the call returns, and the
``test_helpers.test_clock.advancing``/``.ready`` events are both recorded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import invalid_param
from ..listing import LIST_PARAMS, paginate
from ..routing import ApiCall, ApiRoute
from ..store import JSON

if TYPE_CHECKING:
    from ..emulator import Emulator

__all__ = ["ROUTES"]

DELETES_AFTER = 30 * 86_400


def _render(emu: Emulator, clock: JSON) -> JSON:
    clock["frozen_time"] = emu.now()
    return emu.render(clock)


def create_clock(emu: Emulator, call: ApiCall) -> JSON:
    p = call.params(("frozen_time", "name", "customer"))
    frozen = p.integer("frozen_time", required=True)
    assert frozen is not None
    if frozen > emu.now():
        emu.advance_to(frozen)
    clock: JSON = {
        "id": emu.ids.new("clock"),
        "object": "test_helpers.test_clock",
        "created": emu.now(),
        "deletes_after": emu.now() + DELETES_AFTER,
        "frozen_time": emu.now(),
        "livemode": False,
        "name": p.string("name"),
        "status": "ready",
        "status_details": {},
    }
    emu.store.add(clock)
    emu.emit("test_helpers.test_clock.created", clock)
    return _render(emu, clock)


def advance_clock(emu: Emulator, call: ApiCall) -> JSON:
    clock = emu.store.get("test_helpers.test_clock", call.arg("id"))
    p = call.params(("frozen_time",))
    target = p.integer("frozen_time", required=True)
    assert target is not None
    if target <= emu.now():
        raise invalid_param("frozen_time", "The test clock can only be advanced to a time in the future.")
    clock["status"] = "advancing"
    emu.emit("test_helpers.test_clock.advancing", clock)
    emu.advance_to(target)
    clock["status"] = "ready"
    clock["frozen_time"] = emu.now()
    emu.emit("test_helpers.test_clock.ready", clock)
    return _render(emu, clock)


def delete_clock(emu: Emulator, call: ApiCall) -> JSON:
    clock = emu.store.get("test_helpers.test_clock", call.arg("id"))
    emu.store.remove(clock["id"])
    emu.emit("test_helpers.test_clock.deleted", clock)
    return {"id": clock["id"], "object": "test_helpers.test_clock", "deleted": True}


def get_clock(emu: Emulator, call: ApiCall) -> JSON:
    return _render(emu, emu.store.get("test_helpers.test_clock", call.arg("id")))


def list_clocks(emu: Emulator, call: ApiCall) -> JSON:
    p = call.params(LIST_PARAMS)
    return paginate(
        emu.store.newest_first("test_helpers.test_clock"),
        p,
        "/v1/test_helpers/test_clocks",
        lambda c: _render(emu, c),
    )


ROUTES = [
    ApiRoute("POST", "/v1/test_helpers/test_clocks", create_clock),
    ApiRoute("GET", "/v1/test_helpers/test_clocks", list_clocks),
    ApiRoute("GET", "/v1/test_helpers/test_clocks/{id}", get_clock),
    ApiRoute("POST", "/v1/test_helpers/test_clocks/{id}/advance", advance_clock),
    ApiRoute("DELETE", "/v1/test_helpers/test_clocks/{id}", delete_clock),
]
