"""A stateful, in-memory Stripe emulator for offline runs and tests.

It speaks enough of Stripe's ``/v1`` API, in current shapes, for syncd: products,
prices, customers, multi-item subscriptions with proration and trials, subscription
schedules, invoices with payment outcomes and dunning, billing meters, events,
webhook endpoints, idempotency keys and ``expand[]``. Time only moves when told
(``POST /_emulator/clock/advance``), webhooks are signed like Stripe's and can be
duplicated, reordered, delayed or failed on purpose, and the API can be made to
answer 429/5xx. See :mod:`.control` for the control endpoints.

    from syncd.stripe_emulator import EmulatorConfig, create_app, serve
"""

from __future__ import annotations

from .app import create_app
from .config import API_VERSION, EmulatorConfig
from .emulator import Emulator
from .errors import StripeAPIError
from .faults import FaultConfig
from .server import DEFAULT_PORT, BackgroundServer, serve
from .webhooks import sign_payload

__all__ = [
    "API_VERSION",
    "DEFAULT_PORT",
    "BackgroundServer",
    "Emulator",
    "EmulatorConfig",
    "FaultConfig",
    "StripeAPIError",
    "create_app",
    "serve",
    "sign_payload",
]
