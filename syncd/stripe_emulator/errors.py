"""Stripe-shaped API errors.

Every failure the emulator reports to an API client is a :class:`StripeAPIError`,
rendered as Stripe's error envelope::

    {"error": {"type": "invalid_request_error", "code": "resource_missing",
               "message": "No such customer: 'cus_x'", "param": "id"}}

The HTTP status follows Stripe: 400 invalid request, 401 authentication, 402 card
errors, 404 missing resources, 409 idempotency conflicts, 429 rate limits and 5xx
for API errors.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "StripeAPIError",
    "card_declined",
    "invalid_param",
    "missing_param",
    "not_found",
    "unknown_param",
]


class StripeAPIError(Exception):
    """An error returned to an API client in Stripe's JSON error shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def to_json(self) -> dict[str, Any]:
        err: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.code is not None:
            err["code"] = self.code
            err["doc_url"] = f"https://stripe.com/docs/error-codes/{self.code.replace('_', '-')}"
        if self.param is not None:
            err["param"] = self.param
        err.update(self.extra)
        return {"error": err}


def not_found(kind: str, ident: str, param: str = "id") -> StripeAPIError:
    return StripeAPIError(404, f"No such {kind}: '{ident}'", code="resource_missing", param=param)


def invalid_param(param: str, message: str, code: str = "parameter_invalid") -> StripeAPIError:
    return StripeAPIError(400, message, code=code, param=param)


def missing_param(param: str) -> StripeAPIError:
    return StripeAPIError(400, f"Missing required param: {param}.", code="parameter_missing", param=param)


def unknown_param(param: str) -> StripeAPIError:
    return StripeAPIError(400, f"Received unknown parameter: {param}", code="parameter_unknown", param=param)


def card_declined(message: str = "Your card was declined.") -> StripeAPIError:
    return StripeAPIError(
        402,
        message,
        type="card_error",
        code="card_declined",
        extra={"decline_code": "generic_decline"},
    )
