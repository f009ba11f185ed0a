"""The Redis adapter against the real Redis: replicator key layout, stale keys, deletions, sequence."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Sequence

import redis

from syncd.engine import wire
from syncd.hookspecs import Change
from syncd_redis.plugin import RedisAdapter

from .conftest import FakeSource, company, flag, stream

V = wire.ENGINE_VERSION_KEY
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def changes(*company_ids: str | None, topic: str = "entitlements.changed") -> Sequence[Change]:
    return [Change(seq=i + 1, topic=topic, company_id=c, created_at=T0) for i, c in enumerate(company_ids)]


def test_resync_writes_the_replicator_layout(
    adapter: RedisAdapter, source: FakeSource, rclient: redis.Redis, prefix: str
) -> None:
    acme = company("comp_acme", Domain="Acme.COM", stripe_customer_id="cus_1")
    source.company_map = {"comp_acme": acme, "comp_b": company("comp_b", domain="b.io")}
    source.flag_list = [flag("Beta-Feature", True), flag("seats")]
    source.user_map = {"user_1": wire.User(id="user_1", keys={"Email": "Ann@Acme.com"})}
    adapter.syncd_resync()

    assert json.loads(rclient.get(f"{prefix}:company:{V}:comp_acme") or "") == acme.to_wire()
    # Lookup keys: lowercased key and value -> the id as a JSON string (the SDKs' RedisCache format).
    assert rclient.get(f"{prefix}:company:{V}:domain:acme.com") == '"comp_acme"'
    assert rclient.get(f"{prefix}:company:{V}:stripe_customer_id:cus_1") == '"comp_acme"'
    assert json.loads(rclient.get(f"{prefix}:flags:{V}:beta-feature") or "") == source.flag_list[0].to_wire()
    assert rclient.get(f"{prefix}:user:{V}:email:ann@acme.com") == '"user_1"'
    assert json.loads(rclient.get(f"{prefix}:user:{V}:user_1") or "")["keys"] == {"Email": "Ann@Acme.com"}
    assert rclient.get(f"{prefix}:syncd:cache_version") == V
    assert rclient.ttl(f"{prefix}:company:{V}:comp_acme") == -1  # no expiry by default
    assert stream(rclient, prefix) == [{"seq": "1", "type": "resync", "id": ""}]


def test_resync_deletes_keys_not_seen_and_keeps_other_versions(
    adapter: RedisAdapter, source: FakeSource, rclient: redis.Redis, prefix: str
) -> None:
    stale = [
        f"{prefix}:company:{V}:comp_gone",
        f"{prefix}:company:{V}:domain:gone.io",
        f"{prefix}:flags:{V}:removed-flag",
        f"{prefix}:user:{V}:user_gone",
    ]
    other_version = f"{prefix}:company:00000000:comp_gone"
    for key in [*stale, other_version]:
        rclient.set(key, "{}")
    source.company_map = {"comp_a": company("comp_a", domain="a.io")}
    source.flag_list = [flag("kept")]
    adapter.syncd_resync()
    assert [k for k in stale if rclient.exists(k)] == []
    assert rclient.exists(other_version)
    assert rclient.exists(f"{prefix}:company:{V}:domain:a.io", f"{prefix}:flags:{V}:kept") == 2


def test_key_change_removes_the_old_lookup_but_not_a_new_owners(
    adapter: RedisAdapter, source: FakeSource, rclient: redis.Redis, prefix: str
) -> None:
    source.company_map = {"comp_a": company("comp_a", slug="old", domain="a.io")}
    adapter.syncd_publish(changes("comp_a"))
    assert rclient.get(f"{prefix}:company:{V}:slug:old") == '"comp_a"'
    # comp_a moves to slug "new"; comp_b takes over domain a.io in the same batch.
    source.company_map = {
        "comp_a": company("comp_a", slug="new"),
        "comp_b": company("comp_b", domain="a.io"),
    }
    adapter.syncd_publish(changes("comp_a", "comp_b"))
    assert rclient.get(f"{prefix}:company:{V}:slug:old") is None
    assert rclient.get(f"{prefix}:company:{V}:slug:new") == '"comp_a"'
    assert rclient.get(f"{prefix}:company:{V}:domain:a.io") == '"comp_b"'


def test_deleted_company_and_its_lookups_are_removed(
    adapter: RedisAdapter, source: FakeSource, rclient: redis.Redis, prefix: str
) -> None:
    source.company_map = {"comp_a": company("comp_a", domain="a.io"), "comp_b": company("comp_b", x="1")}
    adapter.syncd_publish(changes("comp_a", "comp_b"))
    del source.company_map["comp_a"]
    adapter.syncd_publish(changes("comp_a"))
    assert rclient.exists(f"{prefix}:company:{V}:comp_a", f"{prefix}:company:{V}:domain:a.io") == 0
    assert rclient.exists(f"{prefix}:company:{V}:comp_b")
    assert stream(rclient, prefix)[-1] == {"seq": "3", "type": "company_deleted", "id": "comp_a"}


def test_change_for_every_company_rewrites_flags_and_companies(
    adapter: RedisAdapter, source: FakeSource, rclient: redis.Redis, prefix: str
) -> None:
    source.flag_list = [flag("a"), flag("b")]
    source.company_map = {f"comp_{i}": company(f"comp_{i}", n=str(i)) for i in range(5)}
    adapter.syncd_resync()
    source.flag_list = [flag("a", default=True)]
    source.company_map["comp_2"] = company("comp_2", n="two")
    adapter.syncd_publish(changes(None))
    assert rclient.exists(f"{prefix}:flags:{V}:b") == 0
    assert json.loads(rclient.get(f"{prefix}:flags:{V}:a") or "")["default_value"] is True
    assert rclient.get(f"{prefix}:company:{V}:n:two") == '"comp_2"'
    assert [m["type"] for m in stream(rclient, prefix)] == ["resync", "flags", "resync"]


def test_users_follow_user_events(
    adapter: RedisAdapter, source: FakeSource, rclient: redis.Redis, prefix: str
) -> None:
    source.user_map = {"user_1": wire.User(id="user_1", keys={"email": "a@x.io"})}
    event = Change(seq=1, topic="user.changed", company_id=None, created_at=T0, payload={"user_id": "user_1"})
    adapter.syncd_publish([event])
    assert rclient.get(f"{prefix}:user:{V}:email:a@x.io") == '"user_1"'
    source.user_map = {}
    adapter.syncd_publish([event])
    assert rclient.exists(f"{prefix}:user:{V}:user_1", f"{prefix}:user:{V}:email:a@x.io") == 0
    assert [m["type"] for m in stream(rclient, prefix)] == ["user", "user_deleted"]


def test_sequence_is_gap_free_and_identical_on_stream_and_pubsub(
    adapter: RedisAdapter, source: FakeSource, rclient: redis.Redis, prefix: str
) -> None:
    pubsub = rclient.pubsub()
    pubsub.subscribe(f"{prefix}:syncd:changes")
    assert pubsub.get_message(timeout=1)["type"] == "subscribe"  # type: ignore[index]
    source.flag_list = [flag("f")]
    source.company_map = {f"comp_{i}": company(f"comp_{i}", k=str(i)) for i in range(3)}
    adapter.syncd_resync()
    adapter.syncd_publish(changes("comp_0", "comp_1", "comp_2"))
    del source.company_map["comp_1"]
    adapter.syncd_publish(changes("comp_1", None))
    received = []
    deadline = time.monotonic() + 5
    while len(received) < 7 and time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.5)
        if message and message["type"] == "message":
            received.append(json.loads(message["data"]))
    pubsub.close()
    logged = stream(rclient, prefix)
    assert [int(m["seq"]) for m in logged] == list(range(1, 8))
    assert [(m["seq"], m["type"], m["id"]) for m in received] == [
        (int(m["seq"]), m["type"], m["id"]) for m in logged
    ]
    assert [m["type"] for m in logged] == [
        "resync", "company", "company", "company", "flags", "resync", "company_deleted",
    ]  # fmt: skip


def test_catalog_change_rewrites_flags_only(
    adapter: RedisAdapter, source: FakeSource, rclient: redis.Redis, prefix: str
) -> None:
    source.flag_list = [flag("a")]
    source.company_map = {"comp_a": company("comp_a", n="1")}
    adapter.syncd_publish(changes(None))
    source.flag_list = [flag("a", default=True)]
    source.company_map["comp_a"] = company("comp_a", n="changed")
    adapter.syncd_publish(changes(None, topic="catalog.changed"))
    assert json.loads(rclient.get(f"{prefix}:flags:{V}:a") or "")["default_value"] is True
    assert rclient.exists(f"{prefix}:company:{V}:n:changed") == 0  # companies come with their own rows
    assert [m["type"] for m in stream(rclient, prefix)][-1] == "flags"


def test_company_is_rewritten_when_time_crosses_its_boundary(
    adapter: RedisAdapter, source: FakeSource, rclient: redis.Redis, prefix: str
) -> None:
    source.company_map = {"comp_trial": company("comp_trial", plan="trial")}
    source.boundary_map = {"comp_trial": time.time() + 0.3}  # e.g. the trial ends
    adapter.syncd_publish(changes("comp_trial"))
    source.company_map = {"comp_trial": company("comp_trial", plan="free")}
    source.boundary_map = {}
    deadline = time.monotonic() + 5
    while rclient.get(f"{prefix}:company:{V}:plan:free") is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert rclient.get(f"{prefix}:company:{V}:plan:free") == '"comp_trial"'
    assert rclient.get(f"{prefix}:company:{V}:plan:trial") is None
    assert [m["type"] for m in stream(rclient, prefix)] == ["company", "company"]
