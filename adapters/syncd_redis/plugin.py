"""The Redis adapter: syncd's state in the Schematic replicator layout, kept current from change_log.

Enabled by ``SYNCD_REDIS_URL`` (or ``[plugins.redis] enabled = true`` with the URL set).
Options, in ``[plugins.redis]``: ``key_prefix`` (default ``[redis] key_prefix``,
``schematic``), ``ttl_s`` (default none: keys never expire), ``stream_maxlen`` (100000).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import redis
import structlog

from syncd.config import Settings
from syncd.exceptions import StartupError
from syncd.hookspecs import Change, hookimpl
from syncd.services.changes import ENTITLEMENTS_CHANGED

from .source import DatabaseSource, StateSource
from .writer import KeyLayout, RedisWriter

if TYPE_CHECKING:
    from syncd.daemon import Daemon

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class Plan:
    """What a batch of changes asks for: the sum of its rows, each entity written once."""

    everything: bool = False
    companies: set[str] = field(default_factory=set)
    users: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, changes: Sequence[Change]) -> Plan:
        plan = cls()
        for change in changes:
            if change.topic == ENTITLEMENTS_CHANGED and change.company_id is None:
                plan.everything = True
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

    @hookimpl
    def syncd_shutdown(self) -> None:
        if self._client is not None:
            self._client.close()
        self._client = self._writer = self._source = None

    @hookimpl
    def syncd_resync(self) -> None:
        stats = self.writer.resync(self.source.flags(), self.source.company_pages(), self.source.user_pages())
        log.info(
            "redis_resynced",
            flags=stats.flags,
            companies=stats.companies,
            users=stats.users,
            deleted_keys=stats.deleted_keys,
        )

    @hookimpl
    def syncd_publish(self, changes: Sequence[Change]) -> None:
        self.apply(Plan.of(changes))

    def apply(self, plan: Plan) -> None:
        writer, source = self.writer, self.source
        seen: set[str] = set()
        if plan.everything:
            # A flag, feature or plan changed: every flag and every company may read differently.
            writer.put_flags(source.flags())
            for page in source.company_pages():
                writer.put_companies(page, notify=False)
                seen.update(c.id for c in page)
            writer.announce("resync")
        pending = sorted(plan.companies - seen)
        if pending:
            loaded = source.companies(pending)
            writer.put_companies([loaded[i] for i in pending if i in loaded])
            writer.delete_companies([i for i in pending if i not in loaded])
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
