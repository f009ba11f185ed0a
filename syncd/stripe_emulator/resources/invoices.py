"""Invoices and invoice items (``/v1/invoices``, ``/v1/invoiceitems``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import billing
from ..errors import StripeAPIError, card_declined
from ..listing import LIST_PARAMS, created_filter, paginate
from ..routing import ApiCall, ApiRoute, retrieve
from ..store import JSON, public

if TYPE_CHECKING:
    from ..emulator import Emulator

__all__ = ["ROUTES"]


def list_invoices(emu: Emulator, call: ApiCall) -> JSON:
    p = call.params((*LIST_PARAMS, "customer", "subscription", "status", "collection_method", "due_date"))
    items = emu.store.newest_first("invoice")
    for key in ("customer", "subscription", "status", "collection_method"):
        value = p.string(key)
        if value is not None:
            items = [i for i in items if i.get(key) == value]
    items = [o for o in items if created_filter(p)(o)]
    return paginate(items, p, "/v1/invoices", emu.render)


def pay_invoice(emu: Emulator, call: ApiCall) -> JSON:
    invoice = emu.store.get("invoice", call.arg("id"))
    p = call.params(("payment_method", "off_session", "paid_out_of_band", "forgive", "source", "mandate"))
    if invoice["status"] == "paid":
        raise StripeAPIError(400, "Invoice is already paid.")
    if invoice["status"] != "open":
        raise StripeAPIError(400, f"You cannot pay an invoice with status {invoice['status']}.")
    sub = emu.store.find(invoice["subscription"]) if invoice.get("subscription") else None
    before = emu.render(sub) if sub is not None else None
    if p.boolean("paid_out_of_band", False):
        ok = True
        invoice.update(
            status="paid",
            amount_paid=invoice["amount_due"],
            amount_remaining=0,
            next_payment_attempt=None,
            auto_advance=False,
        )
        invoice["status_transitions"]["paid_at"] = emu.now()
        emu.emit("invoice.paid", invoice)
    else:
        ok = billing.attempt_payment(emu, invoice, p.string("payment_method"))
    if sub is not None and before is not None:
        if (
            ok
            and sub["status"] in ("past_due", "unpaid", "incomplete")
            and not billing.open_invoices(emu, sub["id"])
        ):
            sub["status"] = "active"
            sub["_expires_at"] = None
        emu.emit_update("customer.subscription.updated", sub, before)
    if not ok:
        raise card_declined()
    return emu.render(invoice)


def void_invoice(emu: Emulator, call: ApiCall) -> JSON:
    invoice = emu.store.get("invoice", call.arg("id"))
    call.params(())
    if invoice["status"] != "open":
        raise StripeAPIError(400, f"You can only void open invoices (this one is {invoice['status']}).")
    billing.void_invoice(emu, invoice)
    return emu.render(invoice)


def invoice_lines(emu: Emulator, call: ApiCall) -> JSON:
    invoice = emu.store.get("invoice", call.arg("id"))
    p = call.params(LIST_PARAMS)
    return paginate(invoice["_lines"], p, f"/v1/invoices/{invoice['id']}/lines", public)


def list_invoice_items(emu: Emulator, call: ApiCall) -> JSON:
    p = call.params((*LIST_PARAMS, "customer", "invoice", "pending"))
    items = emu.store.newest_first("invoiceitem")
    customer = p.string("customer")
    if customer is not None:
        items = [i for i in items if i["customer"] == customer]
    invoice = p.string("invoice")
    if invoice is not None:
        items = [i for i in items if i["invoice"] == invoice]
    pending = p.boolean("pending")
    if pending is not None:
        items = [i for i in items if (i["invoice"] is None) == pending]
    return paginate(items, p, "/v1/invoiceitems", emu.render)


ROUTES = [
    ApiRoute("GET", "/v1/invoices", list_invoices),
    ApiRoute("GET", "/v1/invoices/{id}", retrieve("invoice")),
    ApiRoute("POST", "/v1/invoices/{id}/pay", pay_invoice),
    ApiRoute("POST", "/v1/invoices/{id}/void", void_invoice),
    ApiRoute("GET", "/v1/invoices/{id}/lines", invoice_lines),
    ApiRoute("GET", "/v1/invoiceitems", list_invoice_items),
    ApiRoute("GET", "/v1/invoiceitems/{id}", retrieve("invoiceitem")),
]
