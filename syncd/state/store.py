"""The entitlement store: the engine's in-memory state, kept equal to the database.

Every process holds one. It loads the catalog and every company at start, then follows the
``change_log`` (``id > cursor``; ids are commit-ordered, see ``services.changes``) and
reloads exactly the companies that changed, or everything on an "all" change. A request
that just committed calls :meth:`follow` itself, so a writer reads its own writes at once;
other processes and replicas catch up on their next poll.

Time boundaries (a trial end, an override expiry, a metric period rolling over) are kept in
a heap; a company whose snapshot has expired is reloaded from the database before it is
answered, so no check is ever served from a state that time has invalidated.

Checks never touch the database on the warm path: key lookup, then the evaluator's snapshot.
Writers (follow, reload) serialise on one lock; readers don't take it.
"""

from __future__ import annotations

import datetime as dt
import gc
import heapq
import math
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import replace

import structlog
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from ..engine import wire
from ..engine.evaluator import Evaluator
from ..engine.flagcheck import (
    REASON_COMPANY_NOT_FOUND,
    REASON_NO_CONTEXT,
    REASON_NO_RULES,
    REASON_USER_NOT_FOUND,
)
from ..engine.wire import CheckFlagResult, Preflight
from ..models import ChangeLog
from ..services.changes import CATALOG_CHANGED, ENTITLEMENTS_CHANGED, USAGE_CHANGED, USAGE_PAYLOAD
from .catalog_view import CatalogView, load_catalog_view
from .loader import LoadedCompany, conservative_validity, load_companies
from .users import KeyConflictError, UserCache

log = structlog.get_logger(__name__)

FOLLOW_BATCH = 5000
WARM_BATCH = 500
USAGE_REFRESH_S = 1.0  # the follower refreshes a company whose usage moved at most this often
Clock = Callable[[], dt.datetime]


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@contextmanager
def _bulk() -> Iterator[None]:
    """Keep the cyclic garbage collector out of a bulk load, then freeze what it built.

    With 100k companies in memory a full collection walks millions of objects, and one
    triggers every few thousand allocations while a bulk load creates objects (measured:
    it made a reload plus rebuild take 1.7x the CPU). The engine's state is acyclic, so
    what it drops is still freed at once by reference counting; freezing only exempts the
    long-lived state from future cycle scans.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
        gc.collect(1)  # young cyclic garbage (other threads') must not be frozen with the state
        gc.freeze()


class EntitlementStore:
    def __init__(self, engine: Engine, clock: Clock = _utcnow) -> None:
        self._engine = engine
        self._clock = clock
        self._lock = threading.RLock()
        self.evaluator = Evaluator()
        self.view: CatalogView | None = None
        self.cursor = 0
        self.loaded = False
        self._key_index: dict[tuple[str, str], str] = {}
        self._keys_of: dict[str, tuple[tuple[str, str], ...]] = {}
        self._expiry: list[tuple[float, str]] = []  # (valid_until, company id) min-heap
        self._valid_until: dict[str, float] = {}  # epoch seconds; the heap may hold stale entries
        # Companies stale only because usage was tracked -> their validity before that: until
        # then their definitions (plans, subscription, entitlements) in memory are current.
        self._usage_stale: dict[str, float] = {}
        self.users = UserCache(engine)

    # --- loading ------------------------------------------------------------------------
    def load(self) -> int:
        """(Re)load everything; returns the number of companies."""
        with self._lock, _bulk(), Session(self._engine) as session:
            # Cursor first: anything committed after it is replayed by follow(), so nothing is missed.
            self.cursor = session.exec(select(func.max(ChangeLog.id))).one() or 0
            now = self._clock()
            self.view = load_catalog_view(session, now)
            self.evaluator = Evaluator(self.view.flags)
            self._key_index.clear()
            self._keys_of.clear()
            self._expiry.clear()
            self._valid_until.clear()
            self._usage_stale.clear()
            loaded = load_companies(session, self.view, None, now)
            for cid, item in loaded.items():
                self._install(cid, item, now, build=False)
            self.users.clear()
            self.loaded = True
        log.info("entitlements_loaded", companies=len(loaded), flags=len(self.view.flags), cursor=self.cursor)
        return len(loaded)

    def _install(self, cid: str, item: LoadedCompany, now: dt.datetime, *, build: bool = True) -> None:
        for pair in self._keys_of.get(cid, ()):
            if self._key_index.get(pair) == cid:
                del self._key_index[pair]
        pairs = tuple((k, v) for k, v in item.company.keys.items())
        for pair in pairs:
            self._key_index[pair] = cid
        self._keys_of[cid] = pairs
        self._usage_stale.pop(cid, None)
        snap = self.evaluator.update_company(item.company, item.boundaries, now, build=build)
        # Until its snapshot exists, a company is trusted up to a conservative bound.
        self._expire_at(cid, snap.valid_until if snap else conservative_validity(item, now))

    def _expire_at(self, cid: str, valid_until: float) -> None:
        self._valid_until[cid] = valid_until
        if valid_until != math.inf:
            heapq.heappush(self._expiry, (valid_until, cid))

    def warm(self, limit: int = WARM_BATCH) -> int:
        """Build deferred snapshots (after a bulk load); returns how many were built."""
        with self._lock, _bulk():
            built = self.evaluator.warm(limit, self._clock())
            for snap in built:
                self._expire_at(snap.company.id, snap.valid_until)
        return len(built)

    def _forget(self, cid: str) -> None:
        self._valid_until.pop(cid, None)
        self._usage_stale.pop(cid, None)
        for pair in self._keys_of.pop(cid, ()):
            if self._key_index.get(pair) == cid:
                del self._key_index[pair]
        self.evaluator.invalidate(cid)

    def reload(self, company_ids: Iterable[str] | None) -> None:
        """Reload these companies (None: the catalog and every company) from the database."""
        if company_ids is None:
            self.load()
            return
        ids = sorted(set(company_ids))
        build = len(ids) <= WARM_BATCH  # big reloads answer at once and warm in the background
        with self._lock, _bulk() if not build else nullcontext(), Session(self._engine) as session:
            assert self.view is not None, "load() first"
            now = self._clock()
            loaded = load_companies(session, self.view, ids, now)
            for cid in ids:
                if cid in loaded:
                    self._install(cid, loaded[cid], now, build=build)
                else:
                    self._forget(cid)

    def _reload_catalog(self) -> None:
        """New plans or plan entitlements: new flag rules, but only the companies recorded
        with the change need new snapshots (a plan rule is scoped to its plan's companies)."""
        with Session(self._engine) as session:
            self.view = load_catalog_view(session, self._clock())
        self.evaluator.set_flags(self.view.flags, rebuild=False)

    # --- following the change log ------------------------------------------------------
    def follow(self) -> int:
        """Apply change_log rows past the cursor; returns how many rows were read."""
        if not self.loaded:
            return 0
        with self._lock, Session(self._engine) as session:
            rows = session.exec(
                select(ChangeLog.id, ChangeLog.topic, ChangeLog.company_id, ChangeLog.payload)
                .where(col(ChangeLog.id) > self.cursor)
                .order_by(col(ChangeLog.id))
                .limit(FOLLOW_BATCH)
            ).all()
        if not rows:
            return 0
        everything = catalog = False
        ids: set[str] = set()
        usage: set[str] = set()
        now_ts = self._clock().timestamp()
        for _, topic, company_id, payload in rows:
            if topic == CATALOG_CHANGED:
                catalog = True
            elif topic == USAGE_CHANGED:
                usage.update((payload or {}).get("company_ids") or ())
            elif topic == ENTITLEMENTS_CHANGED:
                if company_id is None:
                    everything = True
                elif payload == USAGE_PAYLOAD:
                    usage.add(company_id)
                else:
                    ids.add(company_id)
            elif topic == "user.changed":
                self.users.invalidate(str(payload.get("user_id", "")))
        with self._lock:
            if everything:
                self.reload(None)
            else:
                if catalog:
                    self._reload_catalog()
                # Known companies are only marked stale: a check reloads one on demand, the
                # timer reloads the rest in bulk, so a burst of writes costs one reload each.
                known = {cid for cid in ids if cid in self._keys_of}
                for cid in known:
                    self._usage_stale.pop(cid, None)
                    self._expire_at(cid, 0.0)
                ids |= self._mark_usage(usage - ids, now_ts)
                if ids - known:
                    self.reload(ids - known)  # new companies must be findable by key at once
            self.cursor = max(self.cursor, rows[-1][0] or 0)
        return len(rows)

    def _mark_usage(self, company_ids: Iterable[str], now_ts: float) -> set[str]:
        """Mark companies whose usage moved; returns those not known here (to be loaded)."""
        unknown: set[str] = set()
        for cid in company_ids:
            if cid not in self._keys_of:
                unknown.add(cid)  # not known here yet: load it like any new company
                continue
            before = self._valid_until.get(cid, 0.0)
            if before > 0.0:  # valid apart from usage (else a reload is due already)
                # Checks reload it on demand (read-your-writes); the timer refreshes it at
                # most once per USAGE_REFRESH_S, so a stream of tracked events costs one
                # reload per company per interval, not one per batch.
                self._usage_stale[cid] = before
                self._valid_until[cid] = 0.0
                heapq.heappush(self._expiry, (now_ts + USAGE_REFRESH_S, cid))
        return unknown

    def usage_moved(self, company_ids: Iterable[str]) -> None:
        """This process just committed tracked usage for these (known) companies: mark them
        as ``follow`` would, without reading the change log back (the follower timer still
        reads those rows later; marking twice is harmless)."""
        with self._lock:
            unknown = self._mark_usage(company_ids, self._clock().timestamp())
        if unknown:
            self.follow()

    def refresh_expired(self) -> int:
        """Reload companies whose snapshot validity has passed (time crossed a boundary)."""
        now_ts = self._clock().timestamp()
        due: set[str] = set()
        with self._lock:
            while self._expiry and self._expiry[0][0] <= now_ts:
                _, cid = heapq.heappop(self._expiry)
                if self._valid_until.get(cid, math.inf) <= now_ts:
                    due.add(cid)
            if due:
                self.reload(due)
        return len(due)

    def next_expiry(self) -> float | None:
        return self._expiry[0][0] if self._expiry else None

    # --- reading ------------------------------------------------------------------------
    def resolve_company(self, keys: Mapping[str, str] | None) -> str | None:
        """The company id the keys name; None if unknown; KeyConflictError if they disagree."""
        if not keys:
            return None
        found = {self._key_index.get((k, v)) for k, v in keys.items()}
        found.discard(None)
        if len(found) > 1:
            raise KeyConflictError("the company keys given belong to different companies")
        return found.pop() if found else None

    def company(self, company_id: str) -> wire.Company | None:
        """The company's current state (reloaded first if it is stale)."""
        self._fresh(company_id)
        return self.evaluator.company(company_id)

    def company_definition(self, company_id: str) -> wire.Company | None:
        """The company's plans, subscription and entitlements, without its latest usage: the
        ingest path's view. A company stale only because usage was tracked is not reloaded."""
        before = self._usage_stale.get(company_id)
        if before is not None and before > self._clock().timestamp():
            return self.evaluator.company(company_id)
        return self.company(company_id)

    def flags(self) -> Mapping[str, wire.Flag]:
        return self.evaluator.flags

    def _fresh(self, company_id: str) -> None:
        if self._valid_until.get(company_id, math.inf) <= self._clock().timestamp():
            self.reload([company_id])

    def check(
        self,
        company_keys: Mapping[str, str] | None,
        user_keys: Mapping[str, str] | None,
        flag_key: str,
        preflight: Preflight | None = None,
    ) -> CheckFlagResult:
        company_id = self.resolve_company(company_keys)
        user = self.users.resolve(user_keys) if user_keys else None
        if company_id is not None:
            self._fresh(company_id)
        result = self.evaluator.check(company_id, flag_key, user, preflight, self._clock())
        return self._explain(result, company_keys, company_id, user_keys, user)

    def check_all(
        self, company_keys: Mapping[str, str] | None, user_keys: Mapping[str, str] | None
    ) -> Sequence[CheckFlagResult]:
        company_id = self.resolve_company(company_keys)
        user = self.users.resolve(user_keys) if user_keys else None
        if company_id is not None:
            self._fresh(company_id)
        results = self.evaluator.check_all(company_id, user, None, self._clock())
        return [self._explain(r, company_keys, company_id, user_keys, user) for r in results.values()]

    @staticmethod
    def _explain(
        result: CheckFlagResult,
        company_keys: Mapping[str, str] | None,
        company_id: str | None,
        user_keys: Mapping[str, str] | None,
        user: wire.User | None,
    ) -> CheckFlagResult:
        """The API's reasons for a default answer given unknown or missing context."""
        if result.reason != REASON_NO_RULES:
            return result
        if company_keys and company_id is None:
            result = _with_reason(result, REASON_COMPANY_NOT_FOUND)
        elif user_keys and user is None:
            result = _with_reason(result, REASON_USER_NOT_FOUND)
        elif not company_keys and not user_keys:
            result = _with_reason(result, REASON_NO_CONTEXT)
        return result


def _with_reason(result: CheckFlagResult, reason: str) -> CheckFlagResult:
    return replace(result, reason=reason)
