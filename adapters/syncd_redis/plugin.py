"""The Redis adapter: syncd's state in the Schematic replicator layout, kept current from change_log.

Enabled by ``SYNCD_REDIS_URL`` (or ``[plugins.redis] enabled = true`` with the URL set).
Options, in ``[plugins.redis]``: ``key_prefix`` (default ``[redis] key_prefix``,
``schematic``), ``ttl_s`` (default none: keys never expire), ``stream_maxlen`` (100000).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import redis
import structlog

from syncd.config import Settings
from syncd.engine import wire
from syncd.exceptions import StartupError
from syncd.hookspecs import Change, hookimpl
from syncd.services.changes import CATALOG_CHANGED, ENTITLEMENTS_CHANGED

from .boundaries import BoundaryTimer
from .source import DatabaseSource, StateSource
from .writer import KeyLayout, RedisWriter

if TYPE_CHECKING:
    from syncd.daemon import Daemon

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class Plan:
    """What a batch of changes asks for: the sum of its rows, each entity written once."""

    everything: bool = False
    flags: bool = False  # plans or entitlements changed: compiled plan rules live in the flags
    companies: set[str] = field(default_factory=set)
    users: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, changes: Sequence[Change]) -> Plan:
        plan = cls()
        for change in changes:
            if change.topic == ENTITLEMENTS_CHANGED and change.company_id is None:
                plan.everything = True
            elif change.topic == CATALOG_CHANGED:
                plan.flags = True
            elif change.company_id is not None:  # state is written whole: any company event refreshes it
                plan.companies.add(change.company_id)
            user_id = change.payload.get("user_id")
            if change.topic.startswith("user.") and isinstance(user_id, str):
                plan.users.add(user_id)
        return plan


class RedisAdapter:
    def __init__(
        self,
        url: str,
        *,
        key_prefix: str = "schematic",
        ttl_s: int | None = None,
        stream_maxlen: int = 100_000,
        source: Callable[[Daemon], StateSource] | None = None,
    ) -> None:
        self.url = url
        self.layout = KeyLayout(prefix=key_prefix.rstrip(":"))
        self.ttl_s = ttl_s
        self.stream_maxlen = stream_maxlen
        self._source_factory = source
        self._client: redis.Redis | None = None
        self._writer: RedisWriter | None = None
        self._source: StateSource | None = None
        self._timer: BoundaryTimer | None = None
        # One load-and-write at a time: a slower, older load never overwrites a newer write.
        self._lock = threading.Lock()

    @property
    def writer(self) -> RedisWriter:
        if self._writer is None:
            raise RuntimeError("the Redis adapter has not started")
        return self._writer

    @property
    def source(self) -> StateSource:
        if self._source is None:
            raise RuntimeError("the Redis adapter has not started")
        return self._source

    @hookimpl
    def syncd_startup(self, daemon: Daemon) -> None:
        # redis-py connects lazily: Redis being down delays this adapter, not the daemon.
        self._client = redis.Redis.from_url(self.url, socket_timeout=5, socket_connect_timeout=3)
        self._writer = RedisWriter(
            self._client, self.layout, ttl_s=self.ttl_s, stream_maxlen=self.stream_maxlen
        )
        self._source = self._source_factory(daemon) if self._source_factory else DatabaseSource(daemon.engine)
        self._timer = BoundaryTimer(self.rewrite_companies)
        self._timer.start()

    @hookimpl
    def syncd_shutdown(self) -> None:
        if self._timer is not None:
            self._timer.stop()
        if self._client is not None:
            self._client.close()
        self._client = self._writer = self._source = self._timer = None

    @hookimpl
    def syncd_resync(self) -> None:
        with self._lock:
            source = self.source
            source.catalog_changed()
            stats = self.writer.resync(
                source.flags(), self._scheduled(source.company_pages()), source.user_pages()
            )
        log.info(
            "redis_resynced",
            flags=stats.flags,
            companies=stats.companies,
            users=stats.users,
            deleted_keys=stats.deleted_keys,
        )

    @hookimpl
    def syncd_publish(self, changes: Sequence[Change]) -> None:
        with self._lock:
            self.apply(Plan.of(changes))

    def rewrite_companies(self, ids: Sequence[str]) -> None:
        """Write these companies' current state (the boundary timer's callback)."""
        with self._lock:
            self.apply(Plan(companies=set(ids)))

    def _scheduled(self, pages: Iterable[list[wire.Company]]) -> Iterator[list[wire.Company]]:
        for page in pages:
            yield page
            self._schedule([c.id for c in page])

    def _schedule(self, ids: Iterable[str]) -> None:
        if self._timer is not None:
            at = [(cid, self.source.next_boundary(cid)) for cid in ids]
            self._timer.schedule((cid, ts) for cid, ts in at if ts is not None)

    def apply(self, plan: Plan) -> None:
        writer, source = self.writer, self.source
        seen: set[str] = set()
        if plan.everything or plan.flags:
            source.catalog_changed()
            writer.put_flags(source.flags())
        if plan.everything:
            # A flag or feature changed: every company may read differently.
            for page in self._scheduled(source.company_pages()):
                writer.put_companies(page, notify=False)
                seen.update(c.id for c in page)
            writer.announce("resync")
        pending = sorted(plan.companies - seen)
        if pending:
            loaded = source.companies(pending)
            writer.put_companies([loaded[i] for i in pending if i in loaded])
            writer.delete_companies([i for i in pending if i not in loaded])
            self._schedule(loaded)
        if plan.users:
            ids = sorted(plan.users)
            users = source.users(ids)
            writer.put_users([users[i] for i in ids if i in users])
            writer.delete_users([i for i in ids if i not in users])


def make_plugin(config: Mapping[str, Any], settings: Settings) -> RedisAdapter:
    """Entry-point factory (see ``syncd.plugins``): one adapter instance per daemon."""
    url = settings.redis.url.get_secret_value() if settings.redis.url else None  # secret: environment only
    if not url:
        raise StartupError("the Redis adapter is enabled but no Redis URL is set; set SYNCD_REDIS_URL")
    ttl = config.get("ttl_s")
    return RedisAdapter(
        str(url),
        key_prefix=str(config.get("key_prefix", settings.redis.key_prefix)),
        ttl_s=int(ttl) if ttl else None,
        stream_maxlen=int(config.get("stream_maxlen", 100_000)),
    )
