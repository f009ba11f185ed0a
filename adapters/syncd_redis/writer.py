"""Writes the Schematic replicator cache layout into Redis, plus a gap-detectable change channel.

Layout (``{p}`` is the key prefix, default ``schematic``; ``{v}`` the engine version key),
the same one the official SDKs read in replicator mode (their ``RedisCache`` joins its
prefix to the key with a colon and stores every value as JSON):

    {p}:flags:{v}:{lower(flag_key)}          Flag JSON
    {p}:company:{v}:{company_id}             Company JSON
    {p}:company:{v}:{lower(key)}:{lower(value)}   "company_id" (a JSON string)
    {p}:user:{v}:{user_id} / {p}:user:{v}:{lower(key)}:{lower(value)}   the same for users

Change channel: every message takes the next number from ``{p}:syncd:seq`` (INCR), is
appended to the stream ``{p}:syncd:changes`` (approximate MAXLEN) and published on the
channel of the same name, all inside one Lua script so numbers reach both in order and a
consumer seeing a jump knows it missed messages. Each write is one MULTI/EXEC pipeline, so
a reader never sees a company's new lookup keys without its new document.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import redis

from syncd.engine import wire

MessageType = Literal["company", "company_deleted", "flags", "user", "user_deleted", "resync"]

# Numbers the message, appends it to the stream and publishes it; ARGV: maxlen, then (type, id) pairs.
_NOTIFY = """
local seq = 0
for i = 2, #ARGV, 2 do
  seq = redis.call('INCR', KEYS[1])
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '*', 'seq', seq, 'type', ARGV[i], 'id', ARGV[i + 1])
  redis.call('PUBLISH', KEYS[2],
    '{"seq":' .. seq .. ',"type":' .. cjson.encode(ARGV[i]) .. ',"id":' .. cjson.encode(ARGV[i + 1]) .. '}')
end
return seq
"""
# Deletes a lookup key only while it still points at this entity (another may have taken the key).
_DELETE_IF = """
local n = 0
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then n = n + redis.call('DEL', KEYS[i]) end
end
return n
"""


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class KeyLayout:
    prefix: str = "schematic"
    version: str = wire.ENGINE_VERSION_KEY

    def flag(self, key: str) -> str:
        return f"{self.prefix}:flags:{self.version}:{key.lower()}"

    def entity(self, kind: str, entity_id: str) -> str:
        return f"{self.prefix}:{kind}:{self.version}:{entity_id}"

    def lookup(self, kind: str, key: str, value: str) -> str:
        return f"{self.prefix}:{kind}:{self.version}:{key.lower()}:{value.lower()}"

    def lookups(self, kind: str, keys: dict[str, str]) -> list[str]:
        return [self.lookup(kind, k, v) for k, v in keys.items()]

    def pattern(self, kind: str) -> str:
        return f"{self.prefix}:{kind}:{self.version}:*"

    @property
    def seq(self) -> str:
        return f"{self.prefix}:syncd:seq"

    @property
    def changes(self) -> str:
        """The stream key and the pub/sub channel name."""
        return f"{self.prefix}:syncd:changes"

    @property
    def cache_version(self) -> str:
        return f"{self.prefix}:syncd:cache_version"

    @property
    def flag_index(self) -> str:
        """The set of flag keys written last time, so removed flags can be deleted without a SCAN."""
        return f"{self.prefix}:syncd:flags"


@dataclass(slots=True)
class ResyncStats:
    flags: int = 0
    companies: int = 0
    users: int = 0
    deleted_keys: int = 0
    written: set[str] = field(default_factory=set)


Entity = wire.Company | wire.User


class RedisWriter:
    def __init__(
        self,
        client: redis.Redis,
        layout: KeyLayout | None = None,
        *,
        ttl_s: int | None = None,
        stream_maxlen: int = 100_000,
    ) -> None:
        self.client = client
        self.layout = layout or KeyLayout()
        self.ttl_s = ttl_s
        self.stream_maxlen = stream_maxlen
        self._notify = client.register_script(_NOTIFY)
        self._delete_if = client.register_script(_DELETE_IF)

    # -- entities --------------------------------------------------------------------------
    def put_companies(self, companies: Sequence[wire.Company], *, notify: bool = True) -> None:
        self._put("company", companies, notify)

    def put_users(self, users: Sequence[wire.User], *, notify: bool = True) -> None:
        self._put("user", users, notify)

    def delete_companies(self, ids: Sequence[str]) -> None:
        self._delete("company", ids)

    def delete_users(self, ids: Sequence[str]) -> None:
        self._delete("user", ids)

    def _put(self, kind: str, entities: Sequence[Entity], notify: bool) -> None:
        if not entities:
            return
        old = self._old_keys(kind, [e.id for e in entities])
        pipe = self.client.pipeline(transaction=True)
        for entity in entities:
            stale = set(self.layout.lookups(kind, old.get(entity.id, {}))) - set(
                self.layout.lookups(kind, entity.keys)
            )
            if stale:
                self._delete_if(keys=sorted(stale), args=[_dumps(entity.id)], client=pipe)
        for entity in entities:
            self._write_entity(pipe, kind, entity)
        if notify:
            self._message(pipe, [(kind, e.id) for e in entities])
        pipe.execute()

    def _delete(self, kind: str, ids: Sequence[str]) -> None:
        if not ids:
            return
        old = self._old_keys(kind, ids)
        pipe = self.client.pipeline(transaction=True)
        for entity_id in ids:
            lookups = self.layout.lookups(kind, old.get(entity_id, {}))
            if lookups:
                self._delete_if(keys=lookups, args=[_dumps(entity_id)], client=pipe)
            pipe.delete(self.layout.entity(kind, entity_id))
        self._message(pipe, [(f"{kind}_deleted", i) for i in ids])
        pipe.execute()

    def _old_keys(self, kind: str, ids: Sequence[str]) -> dict[str, dict[str, str]]:
        """The keys each entity had in its stored document (to find lookups that went stale)."""
        raw = self.client.mget([self.layout.entity(kind, i) for i in ids])
        out: dict[str, dict[str, str]] = {}
        for entity_id, doc in zip(ids, raw, strict=True):
            if doc is not None:
                try:
                    out[entity_id] = dict(json.loads(doc).get("keys") or {})
                except (ValueError, AttributeError):
                    continue  # unreadable document: overwritten below; resync sweeps its lookups
        return out

    def _write_entity(self, pipe: Any, kind: str, entity: Entity) -> list[str]:
        doc_key = self.layout.entity(kind, entity.id)
        pipe.set(doc_key, _dumps(entity.to_wire()), ex=self.ttl_s)
        written = [doc_key]
        encoded_id = _dumps(entity.id)
        for lookup in self.layout.lookups(kind, entity.keys):
            pipe.set(lookup, encoded_id, ex=self.ttl_s)
            written.append(lookup)
        return written

    # -- flags -----------------------------------------------------------------------------
    def put_flags(self, flags: Sequence[wire.Flag], *, notify: bool = True) -> None:
        """Write every flag and delete the flag keys of flags that no longer exist."""
        keys = {self.layout.flag(f.key): f for f in flags}
        previous = {_text(k) for k in self.client.smembers(self.layout.flag_index)}
        pipe = self.client.pipeline(transaction=True)
        for key, flag in keys.items():
            pipe.set(key, _dumps(flag.to_wire()), ex=self.ttl_s)
        gone = previous - set(keys)
        if gone:
            pipe.delete(*sorted(gone))
        pipe.delete(self.layout.flag_index)
        if keys:
            pipe.sadd(self.layout.flag_index, *keys)
        if notify:
            self._message(pipe, [("flags", "")])
        pipe.execute()

    # -- messages --------------------------------------------------------------------------
    def _message(self, pipe: Any, messages: Iterable[tuple[str, str]]) -> None:
        args: list[Any] = [self.stream_maxlen]
        for kind, entity_id in messages:
            args.extend((kind, entity_id))
        if len(args) > 1:
            self._notify(keys=[self.layout.seq, self.layout.changes], args=args, client=pipe)

    def announce(self, kind: MessageType, entity_id: str = "") -> int:
        pipe = self.client.pipeline(transaction=True)
        self._message(pipe, [(kind, entity_id)])
        return int(pipe.execute()[-1])

    # -- full resync -----------------------------------------------------------------------
    def resync(
        self,
        flags: Sequence[wire.Flag],
        companies: Iterable[Sequence[wire.Company]],
        users: Iterable[Sequence[wire.User]],
    ) -> ResyncStats:
        """Write everything, then delete this version's keys that were not written.

        Existing keys are listed *before* writing, so an entity a concurrent publish adds
        meanwhile is never swept away.
        """
        existing: set[str] = set()
        for kind in ("flags", "company", "user"):
            existing.update(
                _text(k) for k in self.client.scan_iter(match=self.layout.pattern(kind), count=1000)
            )
        stats = ResyncStats()
        self.put_flags(flags, notify=False)
        stats.flags = len(flags)
        stats.written.update(self.layout.flag(f.key) for f in flags)
        for kind, batches in (("company", companies), ("user", users)):
            for batch in batches:
                pipe = self.client.pipeline(transaction=True)
                for entity in batch:
                    stats.written.update(self._write_entity(pipe, kind, entity))
                pipe.execute()
                if kind == "company":
                    stats.companies += len(batch)
                else:
                    stats.users += len(batch)
        stale = sorted(existing - stats.written)
        for start in range(0, len(stale), 1000):
            stats.deleted_keys += int(self.client.unlink(*stale[start : start + 1000]))
        pipe = self.client.pipeline(transaction=True)
        pipe.set(self.layout.cache_version, self.layout.version)
        self._message(pipe, [("resync", "")])
        pipe.execute()
        return stats


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
