"""Decisions from syncd's own entitlement store, for an app that runs syncd in its process.

``StoreSource`` answers from ``daemon.store`` (an ``EntitlementStore``), which follows the
change log itself: nothing to copy, never stale. Key lookups are the store's (exact keys), and
so are its rare database touches (a user seen for the first time, a snapshot past a time
boundary). Usage tracked by metered routes is ingested by the store's own process, which
re-reads the company when the ingest commits, so there is no optimistic bump to make.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from syncd.engine.flagcheck import ENTITLEMENT_TYPES
from syncd.engine.wire import CheckFlagResult
from syncd.state import EntitlementStore, KeyConflictError

from .replica import REASON_KEY_CONFLICT, Keys


class StoreSource:
    """A ``Source`` over an in-process ``EntitlementStore`` (``store`` may be a callable
    returning it, for apps that create the daemon after the middleware)."""

    stale = False

    def __init__(self, store: EntitlementStore | Callable[[], EntitlementStore]) -> None:
        self._store = store

    @property
    def store(self) -> EntitlementStore:
        store = self._store
        return store if isinstance(store, EntitlementStore) else store()

    def start(self) -> None:
        """Nothing to start: the daemon loads and follows its store."""

    def wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self.store.loaded:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def close(self) -> None:
        """The daemon owns the store."""

    def check(self, company: Keys | None, user: Keys | None, flag_key: str) -> CheckFlagResult | None:
        store = self.store
        if not store.loaded:
            return None
        try:
            return store.check(company, user, flag_key)
        except KeyConflictError:
            return CheckFlagResult(
                flag_key=flag_key, value=False, reason=REASON_KEY_CONFLICT, err="key conflict"
            )

    def company_id(self, keys: Keys) -> str | None:
        try:
            return self.store.resolve_company(keys)
        except KeyConflictError:
            return None

    def has_flag(self, flag_key: str) -> bool:
        return flag_key in self.store.flags()

    def is_billing_flag(self, flag_key: str) -> bool:
        flag = self.store.flags().get(flag_key)
        return flag is not None and any(r.rule_type in ENTITLEMENT_TYPES for r in flag.rules)

    def bump_usage(self, company_id: str, event: str, quantity: int) -> None:
        """The store re-reads the company once the tracked usage is ingested."""
