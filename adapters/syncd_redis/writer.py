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
consumer seeing a jump knows it missed messages. Writing a batch of companies is one script
call (one round trip, atomic): stale lookups out, document and lookups in, messages out, so a
reader never sees a company's new lookup keys without its new document.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import redis
from redis.exceptions import NoScriptError

from syncd.engine import wire

MessageType = Literal["company", "company_deleted", "flags", "user", "user_deleted", "resync"]

# The change message: numbered by INCR, appended to the stream and published, in one place.
_NOTIFY_FN = """
local function notify(kind, id)
  local seq = redis.call('INCR', KEYS[1])
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '*', 'seq', seq, 'type', kind, 'id', id)
  redis.call('PUBLISH', KEYS[2],
    '{"seq":' .. seq .. ',"type":' .. cjson.encode(kind) .. ',"id":' .. cjson.encode(id) .. '}')
  return seq
end
"""
# ARGV: maxlen, then (type, id) pairs. Returns the last number used.
_NOTIFY = (
    _NOTIFY_FN
    + """
local seq = 0
for i = 2, #ARGV, 2 do seq = notify(ARGV[i], ARGV[i + 1]) end
return seq
"""
)
# Writes (doc non-empty) or deletes (doc empty) entities in one round trip. ARGV: maxlen, notify
# (1/0), message type, key base ("{p}:company:{v}:"), ttl seconds (0: none), then per entity:
# id, id as JSON, doc, n, n lowercased "key:value" lookup suffixes. The old document's keys
# say which lookups went stale; those are deleted only while they still point at this entity.
# (Lua lowercases ASCII only: a non-ASCII key's stale lookup is left for the next resync.)
_PUT = (
    _NOTIFY_FN
    + """
local notify_on, kind, base, ttl = ARGV[2] == '1', ARGV[3], ARGV[4], tonumber(ARGV[5])
local function put(key, value)
  if ttl > 0 then redis.call('SET', key, value, 'EX', ttl) else redis.call('SET', key, value) end
end
local i = 6
while i <= #ARGV do
  local id, id_json, doc, n = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
  local fresh = {}
  for j = 1, n do fresh[ARGV[i + 3 + j]] = true end
  local doc_key = base .. id
  local old = redis.call('GET', doc_key)
  if old then
    local ok, decoded = pcall(cjson.decode, old)
    if ok and type(decoded) == 'table' and type(decoded['keys']) == 'table' then
      for k, v in pairs(decoded['keys']) do
        local suffix = string.lower(tostring(k)) .. ':' .. string.lower(tostring(v))
        if not fresh[suffix] and redis.call('GET', base .. suffix) == id_json then
          redis.call('DEL', base .. suffix)
        end
      end
    end
  end
  if doc == '' then
    redis.call('DEL', doc_key)
  else
    put(doc_key, doc)
    for suffix in pairs(fresh) do put(base .. suffix, id_json) end
  end
  if notify_on then notify(kind, id) end
  i = i + 4 + n
end
return 1
"""
)


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

    def base(self, kind: str) -> str:
        return f"{self.prefix}:{kind}:{self.version}:"

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


class _Script:
    """A Lua script run by EVALSHA inside pipelines, without redis-py's per-pipeline SCRIPT EXISTS
    round trip; after a Redis restart (NOSCRIPT) the writer loads it again and retries."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    def queue(self, pipe: Any, keys: Sequence[str], args: Sequence[Any]) -> None:
        pipe.evalsha(self.sha, len(keys), *keys, *args)


_SCRIPTS = (_NOTIFY_SCRIPT := _Script(_NOTIFY), _PUT_SCRIPT := _Script(_PUT))


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

    def _execute(self, build: Callable[[Any], None], *, transaction: bool = False) -> list[Any]:
        """Run one pipeline. Every non-idempotent command is a script call, and a NOSCRIPT
        means no script call ran, so running the whole pipeline again is safe."""
        for attempt in (1, 2):
            pipe = self.client.pipeline(transaction=transaction)
            build(pipe)
            try:
                return list(pipe.execute())
            except NoScriptError:
                if attempt == 2:
                    raise
                for script in _SCRIPTS:
                    self.client.script_load(script.source)
        raise AssertionError("unreachable")

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
        if entities:
            items = [(e.id, _dumps(e.to_wire()), _suffixes(e.keys)) for e in entities]
            self._execute(lambda pipe: self._queue_put(pipe, kind, kind, items, notify))

    def _delete(self, kind: str, ids: Sequence[str]) -> None:
        if ids:
            items: list[tuple[str, str, list[str]]] = [(i, "", []) for i in ids]
            self._execute(lambda pipe: self._queue_put(pipe, kind, f"{kind}_deleted", items, True))

    def _queue_put(
        self, pipe: Any, kind: str, message: str, items: Sequence[tuple[str, str, list[str]]], notify: bool
    ) -> None:
        args: list[Any] = [
            self.stream_maxlen,
            1 if notify else 0,
            message,
            self.layout.base(kind),
            self.ttl_s or 0,
        ]
        for entity_id, doc, suffixes in items:
            args.extend((entity_id, _dumps(entity_id), doc, len(suffixes), *suffixes))
        _PUT_SCRIPT.queue(pipe, [self.layout.seq, self.layout.changes], args)

    # -- flags -----------------------------------------------------------------------------
    def put_flags(self, flags: Sequence[wire.Flag], *, notify: bool = True) -> None:
        """Write every flag and delete the flag keys of flags that no longer exist."""
        keys = {self.layout.flag(f.key): _dumps(f.to_wire()) for f in flags}
        previous = {_text(k) for k in self.client.smembers(self.layout.flag_index)}
        gone = sorted(previous - set(keys))

        def build(pipe: Any) -> None:
            for key, doc in keys.items():
                pipe.set(key, doc, ex=self.ttl_s)
            if gone:
                pipe.delete(*gone)
            pipe.delete(self.layout.flag_index)
            if keys:
                pipe.sadd(self.layout.flag_index, *keys)
            if notify:
                self._queue_messages(pipe, [("flags", "")])

        self._execute(build, transaction=True)

    # -- messages --------------------------------------------------------------------------
    def _queue_messages(self, pipe: Any, messages: Iterable[tuple[str, str]]) -> None:
        args: list[Any] = [self.stream_maxlen]
        for kind, entity_id in messages:
            args.extend((kind, entity_id))
        _NOTIFY_SCRIPT.queue(pipe, [self.layout.seq, self.layout.changes], args)

    def announce(self, kind: MessageType, entity_id: str = "") -> int:
        """Publish one numbered message; returns its number."""
        return int(self._execute(lambda pipe: self._queue_messages(pipe, [(kind, entity_id)]))[-1])

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
                self._put(kind, batch, notify=False)
                for entity in batch:
                    stats.written.add(self.layout.entity(kind, entity.id))
                    stats.written.update(self.layout.lookups(kind, entity.keys))
                if kind == "company":
                    stats.companies += len(batch)
                else:
                    stats.users += len(batch)
        stale = sorted(existing - stats.written)
        for start in range(0, len(stale), 1000):
            stats.deleted_keys += int(self.client.unlink(*stale[start : start + 1000]))

        def finish(pipe: Any) -> None:
            pipe.set(self.layout.cache_version, self.layout.version)
            self._queue_messages(pipe, [("resync", "")])

        self._execute(finish)
        return stats


def _suffixes(keys: dict[str, str]) -> list[str]:
    return [f"{k.lower()}:{v.lower()}" for k, v in keys.items()]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
