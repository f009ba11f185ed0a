"""Invoices and invoice items (``/v1/invoices``, ``/v1/invoiceitems``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import billing
from ..clock import period_boundary
from ..errors import StripeAPIError, card_declined
from ..lifecycle import LIVE, usage_lines
from ..listing import LIST_PARAMS, created_filter, paginate
from ..routing import ApiCall, ApiRoute, retrieve
from ..store import JSON, public
from ..subscribing import is_metered, items_of

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


def _upcoming_none(customer: str) -> StripeAPIError:
    return StripeAPIError(400, f"No upcoming invoices for customer: {customer}", code="invoice_upcoming_none")


def create_preview(emu: Emulator, call: ApiCall) -> JSON:
    """The subscription's next renewal invoice as it stands: the next period's licensed items
    at their current prices, the current period's metered usage, and pending invoice items
    (prorations from ``create_prorations`` updates). Only ``customer``/``subscription`` are
    modelled (not ``subscription_details``' what-if changes)."""
    p = call.params(("customer", "subscription", "expand"))
    sub_id, customer = p.string("subscription"), p.string("customer")
    if sub_id is not None:
        sub = emu.store.get("subscription", sub_id, "subscription")
        if customer is not None and sub["customer"] != customer:
            raise StripeAPIError(400, f"Subscription {sub_id} does not belong to customer {customer}.")
    elif customer is not None:
        emu.store.get("customer", customer, "customer")
        live = [s for s in emu.store.all("subscription") if s["customer"] == customer and s["status"] in LIVE]
        if len(live) != 1:
            raise _upcoming_none(customer)
        sub = live[0]
    else:
        raise StripeAPIError(
            400, "Missing required param: customer or subscription.", code="parameter_missing"
        )
    if sub["status"] not in LIVE or sub["cancel_at_period_end"]:
        raise _upcoming_none(sub["customer"])
    start, end = sub["_period_start"], sub["_period_end"]
    if sub["status"] == "trialing":
        next_end = period_boundary(end, sub["_interval"], sub["_interval_count"], 1)
    else:
        next_end = period_boundary(
            sub["_anchor"], sub["_interval"], sub["_interval_count"], sub["_cycle"] + 2
        )
    lines = [
        billing.subscription_line(emu, sub, item, start=end, end=next_end)
        for item in items_of(emu, sub)
        if not is_metered(emu.store.objects[item["price"]])
    ] + usage_lines(emu, sub, start, end)
    return emu.render(billing.preview_invoice(emu, sub, lines))


ROUTES = [
    ApiRoute("POST", "/v1/invoices/create_preview", create_preview),
    ApiRoute("GET", "/v1/invoices", list_invoices),
    ApiRoute("GET", "/v1/invoices/{id}", retrieve("invoice")),
    ApiRoute("POST", "/v1/invoices/{id}/pay", pay_invoice),
    ApiRoute("POST", "/v1/invoices/{id}/void", void_invoice),
    ApiRoute("GET", "/v1/invoices/{id}/lines", invoice_lines),
    ApiRoute("GET", "/v1/invoiceitems", list_invoice_items),
    ApiRoute("GET", "/v1/invoiceitems/{id}", retrieve("invoiceitem")),
]
