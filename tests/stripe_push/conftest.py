"""Fixtures for syncd -> Stripe: the Stripe-sync fixtures (one emulator per session, a world)."""

from __future__ import annotations

from tests.stripe_sync.conftest import (  # noqa: F401  (re-exported fixtures)
    _emulator,
    _migrated_sqlite,
    emulator,
    pg_world,
    sqlite_url,
    world,
)
from tests.stripe_sync.test_localstripe import localstripe, ls_world  # noqa: F401
