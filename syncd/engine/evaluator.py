"""In-process evaluation API over compiled company snapshots.

A warm check (no user, no preflight, snapshot still valid) is two dict lookups and a float
comparison. Everything else (a user whose rules or traits could matter, a preflight, a stale
snapshot, an unknown company) falls back to the full evaluation, which returns exactly what the
snapshot would have (the tests hold the two paths to that).

Recomputation happens when inputs change (``update_company``, ``set_flags``) or when a caller
sweeps expired snapshots (``refresh_expired``), never on the request path. Not thread-safe for
writers: mutate from one thread; readers see either the old or the new snapshot (dict item
assignment is atomic in CPython).
"""

from __future__ import annotations

import datetime as dt
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import replace
from types import MappingProxyType

from syncd.engine.flagcheck import REASON_FLAG_NOT_FOUND, check_flag
from syncd.engine.snapshot import CompanySnapshot, FlagPlan, build_snapshot, plan_flags
from syncd.engine.wire import CheckFlagResult, Company, Flag, Preflight, User

UTC = dt.UTC


def _flag_not_found(flag_key: str) -> CheckFlagResult:
    return CheckFlagResult(flag_key=flag_key, value=False, reason=REASON_FLAG_NOT_FOUND, err="flag not found")


class Evaluator:
    """Holds flags, companies and their snapshots; answers checks."""

    def __init__(self, flags: Iterable[Flag] = ()) -> None:
        self._flags: dict[str, Flag] = {}
        self._plans: tuple[FlagPlan, ...] = ()
        self._companies: dict[str, Company] = {}
        self._boundaries: dict[str, tuple[dt.datetime, ...]] = {}
        self._snaps: dict[str, CompanySnapshot] = {}
        self._cold: deque[str] = deque()
        self.set_flags(flags)

    # --- inputs -----------------------------------------------------------------------------
    @property
    def flags(self) -> Mapping[str, Flag]:
        return MappingProxyType(self._flags)

    def set_flags(
        self, flags: Iterable[Flag], now: dt.datetime | None = None, *, rebuild: bool = True
    ) -> None:
        """Replace the flag catalog and recompute every held company's snapshot.

        ``rebuild=False`` is for a change the caller knows only affects some companies (e.g.
        one plan version's entitlements): it rebuilds those itself with ``update_company``, and
        the others' results stand. A flag missing from a snapshot is evaluated in full.
        """
        self._flags = {f.key: f for f in flags}
        self._plans = plan_flags(self._flags.values())
        if not rebuild:
            return
        when = now or dt.datetime.now(UTC)
        for company_id in list(self._companies):
            self._rebuild(company_id, when)

    def update_company(
        self,
        company: Company,
        boundaries: Iterable[dt.datetime] = (),
        now: dt.datetime | None = None,
        *,
        build: bool = True,
    ) -> CompanySnapshot | None:
        """Add or replace a company and recompute its snapshot.

        ``boundaries``: instants when the company's inputs change on their own (an override's
        expiry, a trial's end); the snapshot is not trusted past the earliest future one.
        ``build=False`` defers the snapshot to :meth:`warm` (bulk reloads): until then the
        company is answered by full evaluation, which gives the same results.
        """
        self._companies[company.id] = company
        self._boundaries[company.id] = tuple(boundaries)
        if build:
            return self._rebuild(company.id, now or dt.datetime.now(UTC))
        self._snaps.pop(company.id, None)
        self._cold.append(company.id)
        return None

    def warm(self, limit: int, now: dt.datetime | None = None) -> list[CompanySnapshot]:
        """Build up to ``limit`` deferred snapshots; returns those built."""
        when = now or dt.datetime.now(UTC)
        built: list[CompanySnapshot] = []
        while self._cold and len(built) < limit:
            company_id = self._cold.popleft()
            if company_id in self._companies and company_id not in self._snaps:
                built.append(self._rebuild(company_id, when))
        return built

    @property
    def cold(self) -> int:
        """Companies still waiting for a snapshot (an upper bound: ids may repeat)."""
        return len(self._cold)

    def invalidate(self, company_id: str) -> None:
        """Forget a company and its snapshot (it was deleted, or will be reloaded)."""
        self._companies.pop(company_id, None)
        self._boundaries.pop(company_id, None)
        self._snaps.pop(company_id, None)

    def refresh_expired(self, now: dt.datetime | None = None) -> int:
        """Recompute snapshots whose validity has ended; returns how many were rebuilt."""
        when = now or dt.datetime.now(UTC)
        t = when.timestamp()
        stale = [cid for cid, snap in self._snaps.items() if snap.valid_until <= t]
        for company_id in stale:
            self._rebuild(company_id, when)
        return len(stale)

    def snapshot(self, company_id: str) -> CompanySnapshot | None:
        return self._snaps.get(company_id)

    def company(self, company_id: str) -> Company | None:
        return self._companies.get(company_id)

    def _rebuild(self, company_id: str, now: dt.datetime) -> CompanySnapshot:
        snap = build_snapshot(self._companies[company_id], self._plans, now, self._boundaries[company_id])
        self._snaps[company_id] = snap
        return snap

    # --- checks -----------------------------------------------------------------------------
    def check(
        self,
        company_id: str | None,
        flag_key: str,
        user: User | None = None,
        preflight: Preflight | None = None,
        now: dt.datetime | None = None,
    ) -> CheckFlagResult:
        """Evaluate one flag for a company (and optionally a user and a preflight)."""
        if preflight is None and company_id is not None:
            snap = self._snaps.get(company_id)
            if snap is not None and (time.time() if now is None else now.timestamp()) < snap.valid_until:
                result = snap.results.get(flag_key)
                if result is not None:
                    if user is None:
                        return result
                    if flag_key not in snap.user_sensitive and not self._user_rules(user, flag_key):
                        # Nothing the user carries can change the outcome; only the id differs.
                        return replace(result, user_id=user.id)
        return self._full(company_id, flag_key, user, preflight, now)

    def check_all(
        self,
        company_id: str | None,
        user: User | None = None,
        preflight: Preflight | None = None,
        now: dt.datetime | None = None,
    ) -> Mapping[str, CheckFlagResult]:
        """Every flag's result for a company (keyed by flag key)."""
        if user is None and preflight is None and company_id is not None:
            snap = self._snaps.get(company_id)
            t = time.time() if now is None else now.timestamp()
            if snap is not None and t < snap.valid_until:
                return snap.results
        return {k: self.check(company_id, k, user, preflight, now) for k in self._flags}

    def evaluate(
        self,
        company_id: str | None,
        flag_key: str,
        user: User | None = None,
        preflight: Preflight | None = None,
        now: dt.datetime | None = None,
    ) -> CheckFlagResult:
        """Always the full evaluation (the reference the snapshot path must equal)."""
        return self._full(company_id, flag_key, user, preflight, now)

    def _user_rules(self, user: User, flag_key: str) -> bool:
        if not user.rules:
            return False
        flag_id = self._flags[flag_key].id
        return any(r.flag_id == flag_id for r in user.rules)

    def _full(
        self,
        company_id: str | None,
        flag_key: str,
        user: User | None,
        preflight: Preflight | None,
        now: dt.datetime | None,
    ) -> CheckFlagResult:
        flag = self._flags.get(flag_key)
        if flag is None:
            return _flag_not_found(flag_key)
        # An unknown company evaluates without company context, as the SDKs' replicator
        # mode does when a company is missing from the cache.
        company = None if company_id is None else self._companies.get(company_id)
        return check_flag(flag, company, user, preflight, now or dt.datetime.now(UTC))
