"""Events (``/v1/events``) and webhook endpoints (``/v1/webhook_endpoints``)."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

from ..errors import invalid_param, not_found
from ..events import type_matcher
from ..forms import Params, apply_metadata
from ..listing import LIST_PARAMS, created_filter, paginate
from ..routing import ApiCall, ApiRoute, retrieve
from ..store import JSON, public

if TYPE_CHECKING:
    from ..emulator import Emulator

__all__ = ["ROUTES"]


def list_events(emu: Emulator, call: ApiCall) -> JSON:
    p = call.params((*LIST_PARAMS, "type", "types", "delivery_success"))
    items = emu.events.newest_first()
    etype = p.string("type")
    types = p.strings("types")
    if etype is not None and types:
        raise invalid_param("types", "You may only specify one of these parameters: type, types.")
    if len(types) > 20:
        raise invalid_param("types", "You may pass at most 20 types.")
    if etype is not None or types:
        match = type_matcher([etype] if etype is not None else types)
        items = [e for e in items if match(e["type"])]
    delivered = p.boolean("delivery_success")
    if delivered is not None:
        items = [e for e in items if (e["pending_webhooks"] == 0) == delivered]
    items = [e for e in items if created_filter(p)(e)]
    return paginate(items, p, "/v1/events", copy.deepcopy)


def get_event(emu: Emulator, call: ApiCall) -> JSON:
    event = emu.events.by_id.get(call.arg("id"))
    if event is None:
        raise not_found("event", call.arg("id"))
    return copy.deepcopy(event)


# -- webhook endpoints ----------------------------------------------------------------

FIELDS = ("url", "enabled_events", "description", "metadata", "disabled", "api_version", "connect")


def _apply(endpoint: JSON, p: Params) -> None:
    if "url" in p:
        url = p.req_string("url")
        if not url.startswith(("http://", "https://")):
            raise invalid_param("url", "Invalid URL: must start with http:// or https://")
        endpoint["url"] = url
    if "enabled_events" in p:
        events = p.strings("enabled_events")
        if not events:
            raise invalid_param("enabled_events", "enabled_events must not be empty.")
        endpoint["enabled_events"] = events
    if "description" in p:
        endpoint["description"] = p.string("description")
    if "disabled" in p:
        endpoint["status"] = "disabled" if p.boolean("disabled", False) else "enabled"
    apply_metadata(endpoint["metadata"], p.metadata(), p.raw("metadata"))


def create_endpoint(emu: Emulator, call: ApiCall) -> JSON:
    p = call.params(FIELDS)
    p.req_string("url")
    if not p.strings("enabled_events"):
        raise invalid_param("enabled_events", "Missing required param: enabled_events.", "parameter_missing")
    secret = emu.ids.new("whsec", 32)
    endpoint: JSON = {
        "id": emu.ids.new("we"),
        "object": "webhook_endpoint",
        "api_version": p.string("api_version"),
        "application": None,
        "created": emu.now(),
        "description": None,
        "enabled_events": [],
        "livemode": False,
        "metadata": {},
        "status": "enabled",
        "url": "",
        "_secret": secret,
    }
    _apply(endpoint, p)
    emu.store.add(endpoint)
    out = public(endpoint)
    out["secret"] = secret  # only ever shown on creation, as on Stripe
    return out


def update_endpoint(emu: Emulator, call: ApiCall) -> JSON:
    endpoint = emu.store.get("webhook_endpoint", call.arg("id"))
    _apply(endpoint, call.params(tuple(f for f in FIELDS if f not in ("api_version", "connect"))))
    return emu.render(endpoint)


def delete_endpoint(emu: Emulator, call: ApiCall) -> JSON:
    endpoint = emu.store.get("webhook_endpoint", call.arg("id"))
    emu.store.remove(endpoint["id"])
    return {"id": endpoint["id"], "object": "webhook_endpoint", "deleted": True}


def list_endpoints(emu: Emulator, call: ApiCall) -> JSON:
    p = call.params(LIST_PARAMS)
    return paginate(emu.store.newest_first("webhook_endpoint"), p, "/v1/webhook_endpoints", emu.render)


ROUTES = [
    ApiRoute("GET", "/v1/events", list_events),
    ApiRoute("GET", "/v1/events/{id}", get_event),
    ApiRoute("POST", "/v1/webhook_endpoints", create_endpoint),
    ApiRoute("GET", "/v1/webhook_endpoints", list_endpoints),
    ApiRoute("GET", "/v1/webhook_endpoints/{id}", retrieve("webhook_endpoint")),
    ApiRoute("POST", "/v1/webhook_endpoints/{id}", update_endpoint),
    ApiRoute("DELETE", "/v1/webhook_endpoints/{id}", delete_endpoint),
]
