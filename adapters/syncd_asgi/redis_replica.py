"""The replica fed from syncd's Redis: Schematic replicator layout plus syncd's change stream.

Data (written by syncd's Redis adapter; ``{v}`` = ``{prefix}syncd:cache_version`` or the
engine's version key): ``{prefix}flags:{v}:{key}`` -> Flag JSON, ``{prefix}company:{v}:{id}`` ->
Company JSON, ``{prefix}user:{v}:{id}`` -> User JSON (plus ``...:{key}:{value}`` -> id lookups,
which we rebuild from each entity's own keys instead of reading).

Changes: every message increments ``{prefix}syncd:seq`` and is appended to the stream
``{prefix}syncd:changes`` with fields ``seq``, ``type`` (company, company_deleted, user,
user_deleted, flags, resync) and ``id``. One background thread per process loads everything
(SCAN + MGET), then follows the stream with a blocking XREAD from the last entry seen. A hole
in ``seq`` (a message trimmed away or lost), a counter that went backwards (Redis was reset) or
an explicit resync triggers a full reload. When Redis is unreachable the last-known state keeps
answering, marked stale, while the thread reconnects with capped exponential backoff and
catches up.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Iterable, Iterator
from typing import Any, cast

import redis
import structlog
from redis.backoff import NoBackoff
from redis.retry import Retry

from syncd.engine.wire import ENGINE_VERSION_KEY, Company, Flag, User

from .replica import Replica

log = structlog.get_logger(__name__)

_MGET_CHUNK = 500


class _Reload(Exception):
    """The change stream cannot be trusted from here: reload everything."""


class RedisReplica(Replica):
    """A ``Replica`` kept fresh from syncd's Redis by one daemon thread per process."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "schematic:",
        version: str | None = None,
        block_seconds: float = 1.0,
        retry_min: float = 0.05,
        retry_max: float = 1.0,
        socket_timeout: float = 2.0,
    ) -> None:
        super().__init__()
        # "schematic" and "schematic:" name the same layout (keys are joined with a colon).
        self.url, self.prefix = url, prefix.rstrip(":") + ":"
        prefix = self.prefix
        self._version = version
        self._block_ms = int(block_seconds * 1000)
        self._retry = (retry_min, retry_max)
        self._socket_timeout = socket_timeout
        self.stream = f"{prefix}syncd:changes"
        self._seq_key = f"{prefix}syncd:seq"
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._last_id = "0-0"
        self._last_seq = 0
        self._suspect_seq: int | None = None
        self._v = version or ENGINE_VERSION_KEY
        #: Full loads done by this process (start, gaps, resets, resync): for tests and metrics.
        self.reloads = 0

    # --- feed lifecycle ----------------------------------------------------------------------
    def _start_feed(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(self._stop,), name="syncd-replica", daemon=True
        )
        self._thread.start()

    def _stop_feed(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=self._block_ms / 1000 + self._socket_timeout + 1)

    def _forget_feed(self) -> None:
        self._thread = None
        self._stop = threading.Event()
        self._last_id, self._last_seq = "0-0", 0

    def _client(self) -> redis.Redis:
        return redis.Redis.from_url(
            self.url,
            decode_responses=True,
            # Our loop owns retrying: it must notice an outage at once to mark the state stale.
            retry=Retry(NoBackoff(), 0),
            socket_connect_timeout=self._socket_timeout,
            # A blocking XREAD must return before the socket gives up on it.
            socket_timeout=self._socket_timeout + self._block_ms / 1000,
        )

    def _run(self, stop: threading.Event) -> None:
        delay = self._retry[0]
        need_load = True
        while not stop.is_set():
            client = self._client()
            try:
                if need_load:
                    self._full_load(client)
                    need_load = False
                else:
                    self._resume(client)
                delay = self._retry[0]
                self._follow(client, stop)
            except _Reload as why:
                log.info("replica_reload", reason=str(why))
                need_load = True
            except (redis.RedisError, OSError) as exc:
                if self.ready and not self.stale:
                    log.warning("replica_disconnected", error=str(exc), prefix=self.prefix)
                self.stale = self.ready
                # Jitter so that many workers do not reconnect in lockstep.
                stop.wait(delay * (0.5 + random.random() / 2))
                delay = min(delay * 2, self._retry[1])
            except Exception:
                log.exception("replica_feed_error", prefix=self.prefix)
                self.stale = self.ready
                stop.wait(self._retry[1])
                need_load = True
            finally:
                client.close()

    # --- loading -------------------------------------------------------------------------------
    def _keyspace(self, client: redis.Redis) -> str:
        version = self._version or cast(str | None, client.get(f"{self.prefix}syncd:cache_version"))
        return version or ENGINE_VERSION_KEY

    def _values(self, client: redis.Redis, pattern: str, base: str) -> Iterator[dict[str, Any]]:
        """Every JSON entity under ``base`` (lookup keys ``base{key}:{value}`` are skipped)."""
        keys = [k for k in client.scan_iter(match=pattern, count=1000) if ":" not in k[len(base) :]]
        for i in range(0, len(keys), _MGET_CHUNK):
            for raw in cast(list[str | None], client.mget(keys[i : i + _MGET_CHUNK])):
                if raw is not None:
                    yield json.loads(raw)

    def _load_flags(self, client: redis.Redis, v: str) -> list[Flag]:
        base = f"{self.prefix}flags:{v}:"
        return [Flag.from_wire(d) for d in self._values(client, base + "*", base)]

    def _full_load(self, client: redis.Redis) -> None:
        # Take the stream position first: whatever changes during the load is replayed after
        # it (re-applying a change is harmless; missing one is not).
        latest = cast(list[tuple[str, dict[str, str]]], client.xrevrange(self.stream, count=1))
        if latest:
            last_id, last_seq = latest[0][0], int(latest[0][1].get("seq", 0))
        else:
            last_id, last_seq = "0-0", int(cast(str | None, client.get(self._seq_key)) or 0)
        v = self._v = self._keyspace(client)
        cbase, ubase = f"{self.prefix}company:{v}:", f"{self.prefix}user:{v}:"
        flags = self._load_flags(client, v)
        companies = [Company.from_wire(d) for d in self._values(client, cbase + "*", cbase)]
        users = [User.from_wire(d) for d in self._values(client, ubase + "*", ubase)]
        # Log before ``load`` announces readiness: a process that forks as soon as the data is
        # ready must not fork while this thread holds the log's write lock (the child would
        # inherit it locked and its own feed would hang on its first log line).
        log.info("replica_loaded", flags=len(flags), companies=len(companies), users=len(users), seq=last_seq)
        self._last_id, self._last_seq, self._suspect_seq = last_id, last_seq, None
        self.reloads += 1
        self.stale = False
        self.load(flags, companies, users)

    def _resume(self, client: redis.Redis) -> None:
        """Reconnected: carry on from the last entry unless Redis lost what we had seen."""
        counter = int(cast(str | None, client.get(self._seq_key)) or 0)
        if counter < self._last_seq:
            raise _Reload(f"sequence went back from {self._last_seq} to {counter}")

    # --- following -----------------------------------------------------------------------------
    def _follow(self, client: redis.Redis, stop: threading.Event) -> None:
        while not stop.is_set():
            # Catching up (after a reconnect) reads without blocking so staleness ends as soon
            # as the backlog is applied.
            block = None if self.stale else self._block_ms
            reply = cast(
                list[tuple[str, list[tuple[str, dict[str, str]]]]],
                client.xread({self.stream: self._last_id}, count=500, block=block),
            )
            entries = [e for _, batch in reply for e in batch]
            if entries:
                self._apply(client, entries)
            else:
                self._idle(client)
            if len(entries) < 500:
                self.stale = False

    def _idle(self, client: redis.Redis) -> None:
        """Nothing new: check the counter agrees, and keep snapshots on the fast path."""
        counter = int(cast(str | None, client.get(self._seq_key)) or 0)
        if counter < self._last_seq:
            raise _Reload(f"sequence went back from {self._last_seq} to {counter}")
        if counter > self._last_seq:
            # A writer increments before it appends; only a second look settles it.
            if self._suspect_seq == self._last_seq:
                raise _Reload(f"sequence is at {counter} but the stream stops at {self._last_seq}")
            self._suspect_seq = self._last_seq
        else:
            self._suspect_seq = None
        self.refresh_expired()

    def _apply(self, client: redis.Redis, entries: Iterable[tuple[str, dict[str, str]]]) -> None:
        companies: dict[str, None] = {}
        users: dict[str, None] = {}
        deleted: list[str] = []
        flags = False
        for entry_id, fields in entries:
            seq = int(fields.get("seq", 0))
            if seq > self._last_seq + 1:
                raise _Reload(f"gap in the change sequence: {self._last_seq} -> {seq}")
            kind, ident = fields.get("type", ""), fields.get("id", "")
            if kind == "resync":
                raise _Reload("resync requested")
            if kind == "company" and ident:
                companies[ident] = None
            elif kind == "company_deleted" and ident:
                companies.pop(ident, None)
                deleted.append(ident)
            elif kind in ("user", "user_deleted") and ident:
                users[ident] = None  # re-read: a deleted user's document is gone
            elif kind == "flags":
                flags = True
            self._last_id, self._last_seq = entry_id, max(self._last_seq, seq)
        v = self._v
        if flags:
            self.set_flags(self._load_flags(client, v))
        for company_id in deleted:
            self.remove_company(company_id)
        self._refetch(client, [f"{self.prefix}company:{v}:{c}" for c in companies], companies, "company")
        self._refetch(client, [f"{self.prefix}user:{v}:{u}" for u in users], users, "user")

    def _refetch(self, client: redis.Redis, keys: list[str], ids: Iterable[str], kind: str) -> None:
        if not keys:
            return
        raws = cast(list[str | None], client.mget(keys))
        for entity_id, raw in zip(ids, raws, strict=True):
            if kind == "company":
                if raw is None:
                    self.remove_company(entity_id)
                else:
                    self.put_company(Company.from_wire(json.loads(raw)))
            elif raw is None:
                self.remove_user(entity_id)
            else:
                self.put_user(User.from_wire(json.loads(raw)))
