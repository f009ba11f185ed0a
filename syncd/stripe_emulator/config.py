"""Configuration of an emulator instance."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from .faults import FaultConfig

__all__ = ["API_VERSION", "EmulatorConfig"]

#: The API version stripe-python 16.1 pins; events are stamped with it.
API_VERSION = "2026-10-28.endive"

FinalAction = Literal["cancel", "unpaid", "past_due"]


@dataclass
class EmulatorConfig:
    #: Emulator time at start (Unix seconds); None means the real current time.
    start_time: int | None = None
    #: Seed for ids, fault decisions and delivery order (None: random).
    seed: int | None = None
    api_version: str = API_VERSION
    #: An extra webhook target that receives every event (like ``stripe listen
    #: --forward-to``), signed with ``webhook_secret`` (generated when None).
    webhook_url: str | None = None
    webhook_secret: str | None = None
    #: Deliver webhooks from a background thread while the app runs. Tests usually
    #: turn this off and call ``POST /_emulator/webhooks/flush`` instead.
    auto_deliver: bool = True
    webhook_max_attempts: int = 4
    #: Base backoff (real seconds) between background retries: backoff * 2**(n-1).
    webhook_backoff: float = 1.0
    webhook_timeout: float = 5.0
    #: Days after the previous failed attempt at which a renewal invoice is retried.
    dunning_retry_days: list[int] = field(default_factory=lambda: [3, 5, 7])
    #: What happens to a subscription once every retry has failed.
    dunning_final_action: FinalAction = "cancel"
    #: Outcome of a payment when the customer has no payment method at all.
    missing_payment_method: Literal["succeed", "fail"] = "succeed"
    #: An ``incomplete`` subscription expires this long after creation (Stripe: 23 h).
    incomplete_expiry_seconds: int = 23 * 3600
    #: ``customer.subscription.trial_will_end`` is sent this long before a trial ends.
    trial_will_end_seconds: int = 3 * 86_400
    #: Require ``Authorization: Bearer sk_test_…`` on ``/v1`` calls.
    require_auth: bool = True
    faults: FaultConfig | None = None
