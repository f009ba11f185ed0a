"""Customers and test payment methods (``/v1/customers``, ``/v1/payment_methods``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import invalid_param
from ..forms import Params, apply_metadata
from ..listing import LIST_PARAMS, created_filter, paginate
from ..payments import create_payment_method
from ..routing import ApiCall, ApiRoute, retrieve
from ..store import JSON
from ..subscribing import cancel_now

if TYPE_CHECKING:
    from ..emulator import Emulator

__all__ = ["ROUTES", "set_default_payment_method"]

FIELDS = (
    "email",
    "name",
    "description",
    "phone",
    "metadata",
    "invoice_settings",
    "address",
    "shipping",
    "preferred_locales",
    "tax_exempt",
    "payment_method",
    "test_clock",
    "balance",
)


def _resolve_pm(emu: Emulator, customer: JSON, pm: str | None) -> str | None:
    """Accept a stored ``pm_…`` id or a test alias (materialised and attached)."""
    if pm is None:
        return None
    stored = emu.store.find(pm)
    if stored is not None and stored["object"] == "payment_method":
        return pm
    return str(create_payment_method(emu, pm, customer["id"])["id"])


def _apply(emu: Emulator, customer: JSON, p: Params) -> None:
    for key in ("email", "name", "description", "phone"):
        if key in p:
            customer[key] = p.string(key)
    if "tax_exempt" in p:
        customer["tax_exempt"] = p.choice("tax_exempt", ("none", "exempt", "reverse"))
    if "preferred_locales" in p:
        customer["preferred_locales"] = p.strings("preferred_locales")
    if "balance" in p:
        customer["balance"] = p.integer("balance", 0)
    if "address" in p:
        addr = p.sub("address", ("city", "country", "line1", "line2", "postal_code", "state"))
        customer["address"] = (
            None
            if addr is None
            else {k: addr.string(k) for k in ("city", "country", "line1", "line2", "postal_code", "state")}
        )
    if "shipping" in p:
        ship = p.sub("shipping", ("address", "name", "phone"))
        customer["shipping"] = None if ship is None else dict(ship.data)
    apply_metadata(customer["metadata"], p.metadata(), p.raw("metadata"))
    settings = p.sub(
        "invoice_settings", ("default_payment_method", "custom_fields", "footer", "rendering_options")
    )
    if settings is not None and "default_payment_method" in settings:
        pm = settings.string("default_payment_method")
        customer["invoice_settings"]["default_payment_method"] = _resolve_pm(emu, customer, pm)
    if p.string("payment_method") is not None:
        _resolve_pm(emu, customer, p.string("payment_method"))


def create_customer(emu: Emulator, call: ApiCall) -> JSON:
    p = call.params(FIELDS)
    customer: JSON = {
        "id": emu.ids.new("cus", 14),
        "object": "customer",
        "address": None,
        "balance": 0,
        "created": emu.now(),
        "currency": None,
        "default_source": None,
        "delinquent": False,
        "description": None,
        "discount": None,
        "email": None,
        "invoice_prefix": emu.ids.token(8).upper(),
        "invoice_settings": {
            "custom_fields": None,
            "default_payment_method": None,
            "footer": None,
            "rendering_options": None,
        },
        "livemode": False,
        "metadata": {},
        "name": None,
        "next_invoice_sequence": 1,
        "phone": None,
        "preferred_locales": [],
        "shipping": None,
        "tax_exempt": "none",
        "test_clock": p.string("test_clock"),
    }
    if customer["test_clock"] is not None:
        emu.store.get("test_helpers.test_clock", customer["test_clock"], "test_clock")
    emu.store.add(customer)
    _apply(emu, customer, p)
    emu.emit("customer.created", customer)
    return emu.render(customer)


def update_customer(emu: Emulator, call: ApiCall) -> JSON:
    customer = emu.store.get("customer", call.arg("id"))
    p = call.params(tuple(f for f in FIELDS if f != "test_clock"))
    before = emu.render(customer)
    _apply(emu, customer, p)
    emu.emit_update("customer.updated", customer, before)
    return emu.render(customer)


def set_default_payment_method(emu: Emulator, customer: JSON, pm: str | None) -> JSON:
    before = emu.render(customer)
    customer["invoice_settings"]["default_payment_method"] = _resolve_pm(emu, customer, pm)
    emu.emit_update("customer.updated", customer, before)
    return emu.render(customer)


def delete_customer(emu: Emulator, call: ApiCall) -> JSON:
    customer = emu.store.get("customer", call.arg("id"))
    for sub in emu.store.all("subscription"):
        if sub["customer"] == customer["id"] and sub["status"] not in ("canceled", "incomplete_expired"):
            cancel_now(emu, sub, "cancellation_requested")
    emu.store.remove(customer["id"])
    emu.emit("customer.deleted", customer)
    return {"id": customer["id"], "object": "customer", "deleted": True}


def list_customers(emu: Emulator, call: ApiCall) -> JSON:
    p = call.params((*LIST_PARAMS, "email", "test_clock"))
    items = emu.store.newest_first("customer")
    email = p.string("email")
    if email is not None:
        items = [o for o in items if o["email"] == email]
    items = [o for o in items if created_filter(p)(o)]
    return paginate(items, p, "/v1/customers", emu.render)


# -- payment methods ----------------------------------------------------------------


def attach_pm(emu: Emulator, call: ApiCall) -> JSON:
    p = call.params(("customer",))
    customer = emu.store.get("customer", p.req_string("customer"), "customer")
    ident = call.arg("id")
    stored = emu.store.find(ident)
    if stored is None or stored["object"] != "payment_method":
        stored = create_payment_method(emu, ident, None)
    before = emu.render(stored)
    stored["customer"] = customer["id"]
    if before["customer"] is None:
        emu.emit("payment_method.attached", stored)
    return emu.render(stored)


def detach_pm(emu: Emulator, call: ApiCall) -> JSON:
    pm = emu.store.get("payment_method", call.arg("id"))
    if pm["customer"] is None:
        raise invalid_param("payment_method", "The payment method is not attached to a customer.")
    customer = emu.store.find(pm["customer"])
    pm["customer"] = None
    if customer is not None and customer["invoice_settings"]["default_payment_method"] == pm["id"]:
        set_default_payment_method(emu, customer, None)
    emu.emit("payment_method.detached", pm)
    return emu.render(pm)


def create_pm(emu: Emulator, call: ApiCall) -> JSON:
    p = call.params(("type", "card", "metadata", "billing_details"))
    card = p.sub("card", ("token", "number", "exp_month", "exp_year", "cvc"))
    alias = "pm_card_visa"
    if card is not None:
        alias = card.string("token") or card.string("number") or alias
    return emu.render(create_payment_method(emu, alias, None))


def list_customer_pms(emu: Emulator, call: ApiCall) -> JSON:
    customer = emu.store.get("customer", call.arg("id"))
    p = call.params((*LIST_PARAMS, "type"))
    items = [pm for pm in emu.store.newest_first("payment_method") if pm["customer"] == customer["id"]]
    return paginate(items, p, f"/v1/customers/{customer['id']}/payment_methods", emu.render)


ROUTES = [
    ApiRoute("POST", "/v1/customers", create_customer),
    ApiRoute("GET", "/v1/customers", list_customers),
    ApiRoute("GET", "/v1/customers/{id}", retrieve("customer")),
    ApiRoute("POST", "/v1/customers/{id}", update_customer),
    ApiRoute("DELETE", "/v1/customers/{id}", delete_customer),
    ApiRoute("GET", "/v1/customers/{id}/payment_methods", list_customer_pms),
    ApiRoute("POST", "/v1/payment_methods", create_pm),
    ApiRoute("GET", "/v1/payment_methods/{id}", retrieve("payment_method")),
    ApiRoute("POST", "/v1/payment_methods/{id}/attach", attach_pm),
    ApiRoute("POST", "/v1/payment_methods/{id}/detach", detach_pm),
]
