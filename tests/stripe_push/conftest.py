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
