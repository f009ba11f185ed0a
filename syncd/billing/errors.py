"""Stripe failures as caller errors: a declined card is a 402 with the reason, machine-readable."""

from __future__ import annotations

from typing import Any

import stripe

from ..exceptions import ValidationError


class PaymentRequiredError(ValidationError):
    """The payment a change needs was declined; nothing changed."""

    status = 402

    def __init__(self, message: str, *, code: str = "card_declined", **details: Any) -> None:
        super().__init__(message, code=code, **details)


class ForbiddenError(ValidationError):
    status = 403

    def __init__(self, message: str, *, code: str = "forbidden", **details: Any) -> None:
        super().__init__(message, code=code, **details)


class StripeRequestError(ValidationError):
    """Stripe refused or could not take the request (nothing was written locally)."""

    status = 502

    def __init__(self, message: str, *, code: str = "stripe_error", **details: Any) -> None:
        super().__init__(message, code=code, **details)


def translate(exc: stripe.StripeError) -> ValidationError:
    """A caller-facing error for a Stripe exception."""
    err = exc.error
    details: dict[str, Any] = {
        "stripe_code": getattr(err, "code", None) or exc.code,
        "stripe_request_id": exc.request_id,
    }
    if isinstance(exc, stripe.CardError):
        decline = getattr(err, "decline_code", None)
        return PaymentRequiredError(
            exc.user_message or "the card was declined",
            code="card_declined",
            decline_code=decline,
            **details,
        )
    status = 400 if isinstance(exc, stripe.InvalidRequestError) else 502
    error = StripeRequestError(f"Stripe refused the request: {exc.user_message or exc}", **details)
    error.status = status
    return error
