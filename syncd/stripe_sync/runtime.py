"""The Stripe side of a running daemon: its client and apply policy, built once."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import stripe

from ..config import Settings
from ..stripe_api import build_client
from .apply import ApplyOptions

if TYPE_CHECKING:
    from ..daemon import Daemon

_lock = threading.Lock()
_clients: dict[tuple[int, str | None, str | None], stripe.StripeClient] = {}


def client_for(daemon: Daemon) -> stripe.StripeClient | None:
    """The daemon's StripeClient (real Stripe or its emulator); None without a key."""
    key, base = daemon.stripe_api_key, daemon.stripe_api_base
    if key is None:
        return None
    cache_key = (id(daemon), key, base)
    with _lock:
        client = _clients.get(cache_key)
        if client is None:
            client, _ = build_client(daemon.settings, api_key=key, api_base=base)
            _clients[cache_key] = client
        return client


def apply_options(settings: Settings) -> ApplyOptions:
    kinds = frozenset(k.strip() for k in settings.stripe.refetch.split(",") if k.strip())
    return ApplyOptions(refetch=kinds, past_due_grace_days=settings.stripe.past_due_grace_days)
