"""A host process's local copy of syncd's entitlement state, and local decisions from it.

``Replica`` holds flags, companies and users in syncd's own ``Evaluator`` (compiled per-company
snapshots, so a warm check is a couple of dict lookups) plus key -> id indexes. It is the
in-process variant: fed by direct calls (``load``, ``put_company``...) or by a ``loader``
callable it calls on start. ``RedisReplica`` (``syncd_asgi.redis_replica``) feeds the same state
from syncd's Redis and its change stream.

Concurrency: readers never lock; they read ``self._state`` once and use it. Writers (the feed
thread, optimistic usage bumps) serialize on a lock; a full reload builds a new state aside and
swaps it in with one assignment.

Fork safety: nothing built here survives a fork. Each instance remembers the pid it started
in; after a fork (e.g. a pre-forking server that imported the app in the parent) the first use
in the child drops the inherited lock and feed, and starts its own.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn, Protocol

import structlog

from syncd.engine.evaluator import Evaluator
from syncd.engine.flagcheck import ENTITLEMENT_TYPES
from syncd.engine.wire import CheckFlagResult, Company, CompanyMetric, Flag, User

log = structlog.get_logger(__name__)

Keys = Mapping[str, str]
Decided = dict[str, tuple[float, CheckFlagResult]]  # flag key -> (valid until, result)
LoadResult = tuple[Iterable[Flag], Iterable[Company], Iterable[User]]

REASON_KEY_CONFLICT = "Key conflict"


class FrozenKeys(dict[str, str]):
    """Entity keys that cannot change once made (the identity helpers hand these out, one per
    caller, reused across requests). A replica remembers its decisions for one-key
    ``FrozenKeys`` on the mapping itself, so a repeated check skips the key index and the
    snapshot lookups; any write to the replica makes what was remembered unusable."""

    __slots__ = ("_decided",)

    def __init__(self, *args: Any, **kwargs: str) -> None:
        super().__init__(*args, **kwargs)
        # (the replica's generation it was decided in, its decisions by flag)
        self._decided: tuple[object, Decided] | None = None

    def __reduce__(self) -> tuple[type[FrozenKeys], tuple[dict[str, str]]]:
        return FrozenKeys, (dict(self),)

    def _frozen(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError("FrozenKeys cannot be changed")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = __ior__ = _frozen


# The current pid, kept up to date by an at-fork hook so the hot path need not ask the OS.
_pid = [os.getpid()]


def _after_fork_in_child() -> None:
    _pid[0] = os.getpid()


os.register_at_fork(after_in_child=_after_fork_in_child)


class Source(Protocol):
    """What the middleware, the OpenFeature provider and the tracker need from a replica.

    Implemented by ``Replica`` (and ``RedisReplica``) and by ``embedded.StoreSource``.
    """

    stale: bool

    def start(self) -> None: ...
    def wait_ready(self, timeout: float) -> bool: ...
    def close(self) -> None: ...
    def check(self, company: Keys | None, user: Keys | None, flag_key: str) -> CheckFlagResult | None: ...
    def company_id(self, keys: Keys) -> str | None: ...
    def has_flag(self, flag_key: str) -> bool: ...
    def is_billing_flag(self, flag_key: str) -> bool: ...
    def bump_usage(self, company_id: str, event: str, quantity: int) -> None: ...


class KeyConflict(Exception):
    """The keys given for one entity belong to different entities."""


def _index_keys(keys: Keys) -> list[tuple[str, str]]:
    # Lookups are case-insensitive, as in the Schematic cache layout (lower(key):lower(value)).
    return [(k.lower(), v.lower()) for k, v in keys.items()]


def _lookup(index: Mapping[tuple[str, str], str], keys: Keys) -> str | None:
    found: str | None = None
    for k, v in keys.items():
        # Most callers already pass lower-case keys: try as given before lower-casing.
        entity_id = index.get((k, v)) or index.get((k.lower(), v.lower()))
        if entity_id is None:
            continue
        if found is not None and entity_id != found:
            raise KeyConflict(f"keys {dict(keys)} match {found} and {entity_id}")
        found = entity_id
    return found


def _drop_stale(
    index: dict[tuple[str, str], str], old: list[tuple[str, str]], new: list[tuple[str, str]], entity_id: str
) -> None:
    """Remove the lookups an entity no longer has (unless another entity took them since)."""
    for pair in old:
        if pair not in new and index.get(pair) == entity_id:
            del index[pair]


@dataclass(slots=True)
class State:
    """One consistent copy of the data; replaced wholesale on a full reload."""

    evaluator: Evaluator
    company_ids: dict[tuple[str, str], str] = field(default_factory=dict)
    users: dict[str, User] = field(default_factory=dict)
    user_ids: dict[tuple[str, str], str] = field(default_factory=dict)
    billing_flags: frozenset[str] = frozenset()

    @classmethod
    def build(cls, flags: Iterable[Flag], companies: Iterable[Company], users: Iterable[User]) -> State:
        state = cls(Evaluator())
        state.set_flags(list(flags))
        for company in companies:
            state.put_company(company)
        for user in users:
            state.put_user(user)
        return state

    def set_flags(self, flags: list[Flag]) -> None:
        self.evaluator.set_flags(flags)
        self.billing_flags = frozenset(
            f.key for f in flags if any(r.rule_type in ENTITLEMENT_TYPES for r in f.rules)
        )

    def put_company(self, company: Company) -> None:
        # Replace in place (never remove first): a concurrent reader sees the old or the new
        # company, not a moment without it.
        old = self.evaluator.company(company.id)
        pairs = _index_keys(company.keys)
        self.evaluator.update_company(company)
        for pair in pairs:
            self.company_ids[pair] = company.id
        if old is not None:
            _drop_stale(self.company_ids, _index_keys(old.keys), pairs, company.id)

    def remove_company(self, company_id: str) -> None:
        old = self.evaluator.company(company_id)
        if old is None:
            return
        for pair in _index_keys(old.keys):
            if self.company_ids.get(pair) == company_id:
                del self.company_ids[pair]
        self.evaluator.invalidate(company_id)

    def put_user(self, user: User) -> None:
        old = self.users.get(user.id)
        pairs = _index_keys(user.keys)
        self.users[user.id] = user
        for pair in pairs:
            self.user_ids[pair] = user.id
        if old is not None:
            _drop_stale(self.user_ids, _index_keys(old.keys), pairs, user.id)

    def remove_user(self, user_id: str) -> None:
        old = self.users.pop(user_id, None)
        if old is None:
            return
        for pair in _index_keys(old.keys):
            if self.user_ids.get(pair) == user_id:
                del self.user_ids[pair]


def _bumped(company: Company, event: str, quantity: int) -> Company | None:
    """A copy of the company with ``quantity`` added to every metric (and entitlement usage)
    of ``event``.

    Without any metric for the event yet, one is created per period the company's
    entitlements on that event count in, so a first use counts too.
    """
    metrics = [
        dataclasses.replace(m, value=m.value + quantity) if m.event_subtype == event else m
        for m in company.metrics
    ]
    if not any(m.event_subtype == event for m in company.metrics):
        periods = {
            (e.metric_period or "all_time", e.month_reset or "first_of_month")
            for e in company.entitlements
            if e.event_subtype == event
        }
        if not periods:
            return None
        metrics += [CompanyMetric(event, p, r, quantity, company_id=company.id) for p, r in sorted(periods)]
    # The entitlement summaries report usage too (refusal bodies, syncd's own API shape).
    entitlements = [
        dataclasses.replace(e, usage=(e.usage or 0) + quantity) if e.event_subtype == event else e
        for e in company.entitlements
    ]
    return dataclasses.replace(company, metrics=metrics, entitlements=entitlements)


class Replica:
    """Local entitlement state and decisions; the in-process variant.

    ``loader`` (optional) returns ``(flags, companies, users)``; it is called on start in
    each process (and by ``reload``), for apps that embed syncd or build state themselves.
    """

    def __init__(self, loader: Callable[[], LoadResult] | None = None) -> None:
        self._loader = loader
        self._state: State | None = None
        self._lock = threading.Lock()
        self._pid = _pid[0]
        self._started = False
        self._started_in: int | None = None  # the pid ``_started`` holds for (one test per check)
        self._closed = False
        self._ready = threading.Event()
        #: True while the feed is cut off: decisions come from the last-known state.
        self.stale = False
        # Replaced after every write: decisions remembered under an older one are not used.
        self._generation = object()

    # --- lifecycle -------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        """Whether a first full copy has been loaded (in this process)."""
        return self._state is not None

    def start(self) -> None:
        """Start feeding this process's copy (idempotent; restarts after a fork)."""
        if self._pid != _pid[0]:
            self._reset_after_fork()
        if self._started or self._closed:
            return
        self._started = True
        self._started_in = self._pid
        self._start_feed()

    def wait_ready(self, timeout: float) -> bool:
        """Start if needed and wait up to ``timeout`` seconds for the first full copy."""
        self.start()
        return self._ready.wait(timeout)

    def close(self) -> None:
        """Stop the feed for good (the last-known state stays readable)."""
        self._closed = True
        self._stop_feed()

    def _stop_feed(self) -> None:
        """Stop this process's feed; subclasses override."""

    def _start_feed(self) -> None:
        if self._loader is not None:
            self.reload()

    def reload(self) -> None:
        """Rebuild the whole copy from the loader."""
        if self._loader is not None:
            self.load(*self._loader())

    def _reset_after_fork(self) -> None:
        # The parent's lock may have been held by a thread that does not exist here, and its
        # feed (thread, sockets) belongs to the parent: start over, keeping the inherited data
        # as last-known (stale) state until this process's own feed has caught up.
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._pid = _pid[0]
        self._started = False
        self._started_in = None
        if self._state is not None:
            self.stale = True
        self._forget_feed()

    def _forget_feed(self) -> None:
        """Drop (without closing) whatever connects the parent's feed; subclasses override."""

    # --- writers ---------------------------------------------------------------------------
    def load(self, flags: Iterable[Flag], companies: Iterable[Company], users: Iterable[User] = ()) -> None:
        """Replace everything at once (readers switch to the new copy atomically)."""
        state = State.build(flags, companies, users)
        with self._lock:
            self._state = state
            self._changed()
        self._ready.set()

    def _changed(self) -> None:
        # After every write (under the lock), once the data has changed: decisions remembered
        # before it are not used again.
        self._generation = object()

    def _edit(self) -> State:
        if self._state is None:
            self._state = State(Evaluator())
        return self._state

    def set_flags(self, flags: Iterable[Flag]) -> None:
        with self._lock:
            self._edit().set_flags(list(flags))
            self._changed()

    def put_company(self, company: Company) -> None:
        with self._lock:
            self._edit().put_company(company)
            self._changed()

    def remove_company(self, company_id: str) -> None:
        with self._lock:
            self._edit().remove_company(company_id)
            self._changed()

    def put_user(self, user: User) -> None:
        with self._lock:
            self._edit().put_user(user)
            self._changed()

    def remove_user(self, user_id: str) -> None:
        with self._lock:
            self._edit().remove_user(user_id)
            self._changed()

    def bump_usage(self, company_id: str, event: str, quantity: int) -> None:
        """Count usage locally before syncd confirms it, so limits bite before the next refresh."""
        with self._lock:
            state = self._state
            company = None if state is None else state.evaluator.company(company_id)
            if state is None or company is None:
                return
            bumped = _bumped(company, event, quantity)
            if bumped is not None:
                state.evaluator.update_company(bumped)
                self._changed()

    def refresh_expired(self) -> None:
        """Recompute snapshots past their validity (period resets); keeps checks on the fast path."""
        with self._lock:
            if self._state is not None and self._state.evaluator.refresh_expired():
                self._changed()

    # --- readers ---------------------------------------------------------------------------
    def check(self, company: Keys | None, user: Keys | None, flag_key: str) -> CheckFlagResult | None:
        """Evaluate ``flag_key`` for the entities with these keys; None before any data.

        A company or user not in the copy evaluates without it (as the SDKs' replicator
        mode does). Keys matching two different entities give a default-False result with
        ``err`` "key conflict".
        """
        if self._started_in != _pid[0]:
            self.start()
        # The generation before the state: writers change the data first and then the
        # generation, so whatever this check computes from older data is remembered under a
        # generation that is already (or about to be) replaced.
        generation = self._generation
        state = self._state
        if state is None:
            return None
        if type(company) is FrozenKeys and not user:
            # The usual gated request: one company key from an identity helper, no user.
            # (Only one-key FrozenKeys are ever remembered, and they cannot change.)
            seen = company._decided
            if seen is not None and seen[0] is generation:
                hit = seen[1].get(flag_key)
                if hit is not None and time.time() < hit[0]:
                    return hit[1]
            if len(company) == 1:
                return self._check_one_key(state, generation, company, flag_key)
        try:
            company_id = None if not company else _lookup(state.company_ids, company)
            user_obj = None
            if user:
                user_id = _lookup(state.user_ids, user)
                user_obj = None if user_id is None else state.users.get(user_id)
        except KeyConflict:
            return CheckFlagResult(
                flag_key=flag_key, value=False, reason=REASON_KEY_CONFLICT, err="key conflict"
            )
        return state.evaluator.check(company_id, flag_key, user_obj)

    @staticmethod
    def _check_one_key(
        state: State, generation: object, company: FrozenKeys, flag_key: str
    ) -> CheckFlagResult:
        """One company key, no user: the company's compiled snapshot result, remembered on the
        keys until the next write or the end of the snapshot's validity (the same result
        object either way)."""
        company_id = _lookup(state.company_ids, company)  # one key: no conflict possible
        if company_id is not None:
            snap = state.evaluator.snapshot(company_id)
            if snap is not None and time.time() < snap.valid_until:
                result = snap.results.get(flag_key)
                if result is not None:
                    seen = company._decided
                    if seen is None or seen[0] is not generation:
                        seen = company._decided = (generation, {})
                    seen[1][flag_key] = (snap.valid_until, result)
                    return result
        return state.evaluator.check(company_id, flag_key, None)

    def company_id(self, keys: Keys) -> str | None:
        state = self._state
        if state is None:
            return None
        try:
            return _lookup(state.company_ids, keys)
        except KeyConflict:
            return None

    def company(self, company_id: str) -> Company | None:
        state = self._state
        return None if state is None else state.evaluator.company(company_id)

    def has_flag(self, flag_key: str) -> bool:
        state = self._state
        return state is not None and flag_key in state.evaluator.flags

    def is_billing_flag(self, flag_key: str) -> bool:
        """Whether the flag grants a feature through entitlements (plans, add-ons, overrides)."""
        state = self._state
        return state is not None and flag_key in state.billing_flags
