"""Test payment methods and whether a charge succeeds.

The outcome of an invoice payment depends on the payment method in force: the
subscription's ``default_payment_method``, else the customer's
``invoice_settings.default_payment_method``. Stripe's test aliases decide it:
``pm_card_visa``, ``pm_card_mastercard``… succeed; ``pm_card_chargeCustomerFail``,
``pm_card_visa_chargeDeclined``, ``pm_card_chargeDeclined*`` fail, as do the
corresponding raw test card numbers. A customer without any payment method follows
``EmulatorConfig.missing_payment_method``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import invalid_param
from .store import JSON

if TYPE_CHECKING:
    from .emulator import Emulator

__all__ = ["alias_fails", "create_payment_method", "payment_method_for", "payment_succeeds"]

_FAILING_NUMBERS = {
    "4000000000000341",  # attaches fine, charges fail
    "4000000000000002",  # generic decline
    "4000000000009995",  # insufficient funds
    "4000000000000069",  # expired card
    "4000000000000127",  # incorrect cvc
    "4000000000000119",  # processing error
}


def alias_fails(alias: str) -> bool:
    """Whether a test token/card number declines charges."""
    lowered = alias.lower()
    return (
        "chargecustomerfail" in lowered
        or "declined" in lowered
        or lowered.endswith("_fail")
        or alias in _FAILING_NUMBERS
    )


def create_payment_method(emu: Emulator, alias: str, customer: str | None) -> JSON:
    """Materialise a test token (``pm_card_visa``…) as a stored PaymentMethod."""
    if not (alias.startswith("pm_card_") or alias.startswith("tok_") or alias.isdigit()):
        raise invalid_param("payment_method", f"No such PaymentMethod: '{alias}'", "resource_missing")
    brand = "mastercard" if "mastercard" in alias else "visa"
    last4 = alias[-4:] if alias.isdigit() else ("0341" if alias_fails(alias) else "4242")
    pm: JSON = {
        "id": emu.ids.new("pm"),
        "object": "payment_method",
        "allow_redisplay": "unspecified",
        "billing_details": {"address": None, "email": None, "name": None, "phone": None},
        "card": {
            "brand": brand,
            "country": "US",
            "exp_month": 12,
            "exp_year": 2034,
            "funding": "credit",
            "last4": last4,
        },
        "created": emu.now(),
        "customer": customer,
        "livemode": False,
        "metadata": {},
        "type": "card",
        "_alias": alias,
    }
    return emu.store.add(pm)


def payment_method_for(emu: Emulator, customer: JSON, sub: JSON | None = None) -> str | None:
    if sub is not None and sub.get("default_payment_method"):
        return str(sub["default_payment_method"])
    pm = customer["invoice_settings"].get("default_payment_method")
    return str(pm) if pm else None


def payment_succeeds(emu: Emulator, payment_method: str | None) -> bool:
    if payment_method is None:
        return emu.config.missing_payment_method == "succeed"
    stored = emu.store.find(payment_method)
    if stored is not None and stored["object"] == "payment_method":
        return not alias_fails(str(stored["_alias"]))
    return not alias_fails(payment_method)
