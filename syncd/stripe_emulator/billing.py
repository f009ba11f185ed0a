"""Invoices, proration and payment attempts.

An invoice is created for a subscription's first period, for each renewal, and for
``proration_behavior=always_invoice`` updates; it is finalized at once and payment is
attempted against the payment method in force (see :mod:`.payments`). Events follow
Stripe: ``invoice.created``, ``invoice.finalized``, then ``invoice.paid`` +
``invoice.payment_succeeded`` or ``invoice.payment_failed``. A failed renewal gets
``next_payment_attempt`` from the dunning schedule; :mod:`.lifecycle` retries it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .clock import DAY
from .payments import payment_method_for, payment_succeeds
from .store import JSON

if TYPE_CHECKING:
    from .emulator import Emulator

#: Stripe writes quantities on invoice lines as "2 \u00d7 Pro".
TIMES = "\u00d7"

__all__ = [
    "TIMES",
    "attempt_payment",
    "create_invoice",
    "invoice_object",
    "item_amount",
    "preview_invoice",
    "proration_items",
    "subscription_line",
    "void_invoice",
]


def product_name(emu: Emulator, price: JSON) -> str:
    product = emu.store.find(price["product"])
    return str(product["name"]) if product else str(price["product"])


def item_amount(price: JSON, quantity: int | None) -> int:
    return int(price["unit_amount"] or 0) * int(quantity or 0)


def _pricing(price: JSON) -> JSON:
    return {
        "price_details": {"price": price["id"], "product": price["product"]},
        "type": "price_details",
        "unit_amount_decimal": price["unit_amount_decimal"],
    }


def subscription_line(
    emu: Emulator,
    sub: JSON,
    item: JSON,
    *,
    start: int,
    end: int,
    quantity: int | None = None,
    amount: int | None = None,
) -> JSON:
    """An invoice line for a full period of a subscription item."""
    price = emu.store.objects[item["price"]]
    qty = item["quantity"] if quantity is None else quantity
    total = item_amount(price, qty) if amount is None else amount
    return {
        "id": emu.ids.new("il"),
        "object": "line_item",
        "amount": total,
        "currency": price["currency"],
        "description": f"{qty or 0} {TIMES} {product_name(emu, price)}",
        "discount_amounts": [],
        "discountable": True,
        "discounts": [],
        "invoice": None,
        "livemode": False,
        "metadata": {},
        "parent": {
            "invoice_item_details": None,
            "subscription_item_details": {
                "invoice_item": None,
                "proration": False,
                "proration_details": {"credited_items": None},
                "subscription": sub["id"],
                "subscription_item": item["id"],
            },
            "type": "subscription_item_details",
        },
        "period": {"end": end, "start": start},
        "pretax_credit_amounts": [],
        "pricing": _pricing(price),
        "quantity": qty,
        "quantity_decimal": None if qty is None else str(qty),
        "subscription": sub["id"],
        "subtotal": total,
        "taxes": [],
    }


def _line_parent(ii: JSON) -> JSON:
    """A proration from a subscription change is a subscription item's line (Stripe: "consider
    line items where ``parent.subscription_item_details.proration`` is true"); any other
    invoice item is an invoice item's line."""
    details = ii["parent"]["subscription_details"]
    if ii["proration"] and details.get("subscription_item"):
        return {
            "invoice_item_details": None,
            "subscription_item_details": {
                "invoice_item": ii["id"],
                "proration": True,
                "proration_details": {"credited_items": None},
                "subscription": details["subscription"],
                "subscription_item": details["subscription_item"],
            },
            "type": "subscription_item_details",
        }
    return {
        "invoice_item_details": {
            "invoice_item": ii["id"],
            "proration": ii["proration"],
            "proration_details": {"credited_items": None},
            "subscription": details["subscription"],
        },
        "subscription_item_details": None,
        "type": "invoice_item_details",
    }


def _line_from_invoice_item(ii: JSON) -> JSON:
    return {
        "id": ii["_line_id"],
        "object": "line_item",
        "amount": ii["amount"],
        "currency": ii["currency"],
        "description": ii["description"],
        "discount_amounts": [],
        "discountable": False,
        "discounts": [],
        "invoice": None,
        "livemode": False,
        "metadata": {},
        "parent": _line_parent(ii),
        "period": dict(ii["period"]),
        "pretax_credit_amounts": [],
        "pricing": dict(ii["pricing"]),
        "quantity": ii["quantity"],
        "quantity_decimal": ii["quantity_decimal"],
        "subscription": ii["parent"]["subscription_details"]["subscription"],
        "subtotal": ii["amount"],
        "taxes": [],
    }


def proration_items(
    emu: Emulator,
    sub: JSON,
    item: JSON,
    price: JSON,
    quantity: int,
    *,
    credit: bool,
    at: int,
) -> JSON | None:
    """A pending ``invoiceitem`` crediting (or charging) the rest of the period."""
    start, end = sub["_period_start"], sub["_period_end"]
    if end <= start or at >= end:
        return None
    fraction = (end - max(at, start)) / (end - start)
    amount = round(item_amount(price, quantity) * fraction)
    if amount == 0:
        return None
    sign = -1 if credit else 1
    what = "Unused time" if credit else "Remaining time"
    ii: JSON = {
        "id": emu.ids.new("ii"),
        "object": "invoiceitem",
        "amount": sign * amount,
        "currency": price["currency"],
        "customer": sub["customer"],
        "customer_account": None,
        "date": emu.now(),
        "description": f"{what} on {quantity} {TIMES} {product_name(emu, price)}",
        "discountable": False,
        "discounts": [],
        "invoice": None,
        "livemode": False,
        "metadata": {},
        "net_amount": sign * amount,
        "parent": {
            "subscription_details": {"subscription": sub["id"], "subscription_item": item["id"]},
            "type": "subscription_details",
        },
        "period": {"end": end, "start": max(at, start)},
        "pricing": _pricing(price),
        "proration": True,
        "quantity": quantity,
        "quantity_decimal": str(quantity),
        "tax_rates": [],
        "test_clock": None,
        "_line_id": emu.ids.new("il"),
    }
    emu.store.add(ii)
    emu.emit("invoiceitem.created", ii)
    return ii


def pending_items(emu: Emulator, sub: JSON) -> list[JSON]:
    return [
        ii
        for ii in emu.store.all("invoiceitem")
        if ii["invoice"] is None and ii["parent"]["subscription_details"]["subscription"] == sub["id"]
    ]


def create_invoice(
    emu: Emulator,
    sub: JSON,
    lines: list[JSON],
    *,
    reason: str,
    period: tuple[int, int],
    include_pending: bool = True,
) -> JSON:
    """Create, finalize and emit an invoice (payment is attempted separately)."""
    customer = emu.store.objects[sub["customer"]]
    now = emu.now()
    invoice_id = emu.ids.new("in")
    all_lines = list(lines)
    if include_pending:
        for ii in pending_items(emu, sub):
            ii["invoice"] = invoice_id
            all_lines.append(_line_from_invoice_item(ii))
    invoice = invoice_object(emu, sub, invoice_id, all_lines, reason=reason, period=period)
    seq = customer["next_invoice_sequence"]
    customer["next_invoice_sequence"] = seq + 1
    emu.store.add(invoice)
    sub["latest_invoice"] = invoice_id
    emu.emit("invoice.created", invoice)
    invoice["status"] = "open"
    invoice["number"] = f"{customer['invoice_prefix']}-{seq:04d}"
    invoice["effective_at"] = now
    invoice["status_transitions"]["finalized_at"] = now
    emu.emit("invoice.finalized", invoice)
    return invoice


def preview_invoice(emu: Emulator, sub: JSON, lines: list[JSON]) -> JSON:
    """The draft Stripe would create next for ``sub`` (``POST /v1/invoices/create_preview``):
    ``lines`` plus the pending invoice items, touching nothing. Stripe gives previews an
    ``upcoming_in_`` id and temporary ``il_tmp_`` line ids; they are never stored."""
    preview_id = "upcoming_" + emu.ids.new("in")
    all_lines = [*lines, *(_line_from_invoice_item(ii) for ii in pending_items(emu, sub))]
    for line in all_lines:
        line["id"] = emu.ids.new("il_tmp")
    return invoice_object(
        emu, sub, preview_id, all_lines, reason="upcoming", period=(sub["_period_start"], sub["_period_end"])
    )


def invoice_object(
    emu: Emulator, sub: JSON, invoice_id: str, lines: list[JSON], *, reason: str, period: tuple[int, int]
) -> JSON:
    """A draft invoice of ``sub`` holding ``lines`` (stored by the caller, or not: a preview)."""
    customer = emu.store.objects[sub["customer"]]
    now = emu.now()
    for line in lines:
        line["invoice"] = invoice_id
    total = sum(int(line["amount"]) for line in lines)
    amount_due = max(total, 0)
    invoice: JSON = {
        "id": invoice_id,
        "object": "invoice",
        "account_country": "US",
        "account_name": "syncd Stripe emulator",
        "account_tax_ids": None,
        "amount_due": amount_due,
        "amount_overpaid": 0,
        "amount_paid": 0,
        "amount_remaining": amount_due,
        "amount_shipping": 0,
        "application": None,
        "attempt_count": 0,
        "attempted": False,
        "auto_advance": True,
        "automatic_tax": {
            "disabled_reason": None,
            "enabled": False,
            "liability": None,
            "provider": None,
            "status": None,
        },
        "automatically_finalizes_at": None,
        "billing_reason": reason,
        "collection_method": "charge_automatically",
        "created": now,
        "currency": sub["currency"],
        "custom_fields": None,
        "customer": customer["id"],
        "customer_account": None,
        "customer_address": customer["address"],
        "customer_email": customer["email"],
        "customer_name": customer["name"],
        "customer_phone": customer["phone"],
        "customer_shipping": customer["shipping"],
        "customer_tax_exempt": customer["tax_exempt"],
        "customer_tax_ids": [],
        "default_payment_method": None,
        "default_source": None,
        "default_tax_rates": [],
        "description": None,
        "discounts": [],
        "due_date": None,
        "effective_at": None,
        "ending_balance": None,
        "footer": None,
        "from_invoice": None,
        "hosted_invoice_url": None,
        "invoice_pdf": None,
        "issuer": {"type": "self"},
        "last_finalization_error": None,
        "latest_revision": None,
        "livemode": False,
        "metadata": {},
        "next_payment_attempt": None,
        "number": None,
        "on_behalf_of": None,
        "parent": {
            "quote_details": None,
            "subscription_details": {"metadata": dict(sub["metadata"]), "subscription": sub["id"]},
            "type": "subscription_details",
        },
        "payment_settings": {
            "default_mandate": None,
            "payment_method_options": None,
            "payment_method_types": None,
        },
        "period_end": period[1],
        "period_start": period[0],
        "post_payment_credit_notes_amount": 0,
        "pre_payment_credit_notes_amount": 0,
        "receipt_number": None,
        "rendering": None,
        "shipping_cost": None,
        "shipping_details": None,
        "starting_balance": 0,
        "statement_descriptor": None,
        "status": "draft",
        "status_transitions": {
            "finalized_at": None,
            "marked_uncollectible_at": None,
            "paid_at": None,
            "voided_at": None,
        },
        "subscription": sub["id"],
        "subtotal": total,
        "subtotal_excluding_tax": total,
        "test_clock": None,
        "total": total,
        "total_discount_amounts": [],
        "total_excluding_tax": total,
        "total_pretax_credit_amounts": [],
        "total_taxes": [],
        "webhooks_delivered_at": None,
        "_lines": lines,
    }
    return invoice


def _retry_at(emu: Emulator, invoice: JSON) -> int | None:
    if invoice["billing_reason"] == "subscription_create":
        return None  # Stripe does not retry a subscription's first invoice
    schedule = emu.config.dunning_retry_days
    n = invoice["attempt_count"]
    if n > len(schedule):
        return None
    return emu.now() + int(schedule[n - 1]) * DAY


def attempt_payment(emu: Emulator, invoice: JSON, payment_method: str | None = None) -> bool:
    """Try to collect ``invoice``; emits the invoice events and returns success."""
    now = emu.now()
    sub = emu.store.find(invoice["subscription"]) if invoice.get("subscription") else None
    customer = emu.store.objects[invoice["customer"]]
    pm = payment_method or payment_method_for(emu, customer, sub)
    ok = invoice["amount_due"] == 0 or payment_succeeds(emu, pm)
    if invoice["amount_due"] > 0:
        invoice["attempt_count"] += 1
        invoice["attempted"] = True
    if ok:
        invoice["status"] = "paid"
        invoice["amount_paid"] = invoice["amount_due"]
        invoice["amount_remaining"] = 0
        invoice["attempted"] = True
        invoice["next_payment_attempt"] = None
        invoice["status_transitions"]["paid_at"] = now
        invoice["auto_advance"] = False
        emu.emit("invoice.paid", invoice)
        emu.emit("invoice.payment_succeeded", invoice)
        _set_delinquent(emu, customer, False)
        return True
    invoice["next_payment_attempt"] = _retry_at(emu, invoice)
    emu.emit("invoice.payment_failed", invoice)
    _set_delinquent(emu, customer, True)
    return False


def _set_delinquent(emu: Emulator, customer: JSON, value: bool) -> None:
    if customer["delinquent"] != value:
        before = emu.render(customer)
        customer["delinquent"] = value
        emu.emit("customer.updated", customer, before)


def void_invoice(emu: Emulator, invoice: JSON) -> None:
    invoice["status"] = "void"
    invoice["auto_advance"] = False
    invoice["next_payment_attempt"] = None
    invoice["amount_remaining"] = 0
    invoice["status_transitions"]["voided_at"] = emu.now()
    emu.emit("invoice.voided", invoice)


def open_invoices(emu: Emulator, sub_id: str) -> list[JSON]:
    return [
        inv
        for inv in emu.store.all("invoice")
        if inv.get("subscription") == sub_id and inv["status"] == "open"
    ]


def invoice_summary(invoice: JSON) -> dict[str, Any]:
    return {k: invoice[k] for k in ("id", "status", "amount_due", "billing_reason")}
