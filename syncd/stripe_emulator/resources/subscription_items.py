"""Subscription items (``/v1/subscription_items``): add, change, remove, list."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..forms import Params
from ..listing import LIST_PARAMS, paginate
from ..routing import ApiCall, ApiRoute, retrieve
from ..store import JSON
from ..subscribing import PRORATION_BEHAVIORS, ItemSpec, apply_item_changes, items_of

if TYPE_CHECKING:
    from ..emulator import Emulator

__all__ = ["ROUTES"]


def _item_change(emu: Emulator, call: ApiCall, spec: ItemSpec, sub: JSON, p: Params) -> None:
    behavior = p.choice("proration_behavior", PRORATION_BEHAVIORS, "create_prorations")
    assert behavior is not None
    before = emu.render(sub)
    apply_item_changes(
        emu, sub, [spec], proration_behavior=behavior, proration_date=p.integer("proration_date")
    )
    emu.emit_update("customer.subscription.updated", sub, before)


def create_item(emu: Emulator, call: ApiCall) -> JSON:
    p = call.params(
        (
            "subscription",
            "price",
            "quantity",
            "metadata",
            "proration_behavior",
            "proration_date",
            "payment_behavior",
        )
    )
    sub = emu.store.get("subscription", p.req_string("subscription"), "subscription")
    _item_change(
        emu, call, ItemSpec(None, p.req_string("price"), p.integer("quantity"), False, p.metadata()), sub, p
    )
    return emu.render(emu.store.objects[sub["_items"][-1]])


def update_item(emu: Emulator, call: ApiCall) -> JSON:
    item = emu.store.get("subscription_item", call.arg("id"))
    p = call.params(
        ("price", "quantity", "metadata", "proration_behavior", "proration_date", "payment_behavior")
    )
    sub = emu.store.objects[item["subscription"]]
    _item_change(
        emu, call, ItemSpec(item["id"], p.string("price"), p.integer("quantity"), False, p.metadata()), sub, p
    )
    return emu.render(item)


def delete_item(emu: Emulator, call: ApiCall) -> JSON:
    item = emu.store.get("subscription_item", call.arg("id"))
    p = call.params(("proration_behavior", "proration_date", "clear_usage"))
    sub = emu.store.objects[item["subscription"]]
    _item_change(emu, call, ItemSpec(item["id"], None, None, True, None), sub, p)
    return {"id": item["id"], "object": "subscription_item", "deleted": True}


def list_items(emu: Emulator, call: ApiCall) -> JSON:
    p = call.params((*LIST_PARAMS, "subscription"))
    sub = emu.store.get("subscription", p.req_string("subscription"), "subscription")
    return paginate(items_of(emu, sub), p, f"/v1/subscription_items?subscription={sub['id']}", emu.render)


ROUTES = [
    ApiRoute("POST", "/v1/subscription_items", create_item),
    ApiRoute("GET", "/v1/subscription_items", list_items),
    ApiRoute("GET", "/v1/subscription_items/{id}", retrieve("subscription_item")),
    ApiRoute("POST", "/v1/subscription_items/{id}", update_item),
    ApiRoute("DELETE", "/v1/subscription_items/{id}", delete_item),
]
