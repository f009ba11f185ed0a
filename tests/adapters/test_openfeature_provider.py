"""The OpenFeature provider through the official SDK's client API."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from openfeature import api
from openfeature.client import OpenFeatureClient
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason
from openfeature.provider import ProviderStatus

from syncd.engine.wire import Company
from syncd_asgi import RedisReplica, Replica, UsageTracker
from syncd_asgi.openfeature import SyncdProvider
from tests.adapters.asgi_support import (
    Receiver,
    TcpProxy,
    Writer,
    acme,
    flags,
    freebie,
    prefix,
    user,
    wait_for,
)


def loaded() -> Replica:
    return Replica(loader=lambda: (flags(), [acme(), freebie()], [user("u1", "a@example.com")]))


@pytest.fixture
def client() -> Iterator[OpenFeatureClient]:
    api.set_provider(SyncdProvider(loaded()), "syncd-test")
    yield api.get_client("syncd-test")
    api.shutdown()


def test_boolean_resolution_with_reason_variant_and_metadata(client: OpenFeatureClient) -> None:
    on = client.get_boolean_details("sso", False, EvaluationContext("acme"))
    assert (on.value, on.reason, on.variant, on.error_code) == (True, Reason.TARGETING_MATCH, "on", None)
    assert on.flag_metadata["rule_type"] == "plan_entitlement"
    assert on.flag_metadata["company_id"] == "co_acme"
    assert on.flag_metadata["stale"] is False
    off = client.get_boolean_details("sso", True, EvaluationContext("freebie"))
    assert (off.value, off.reason, off.variant) == (False, Reason.DEFAULT, "off")
    metered = client.get_boolean_details("api-calls", False, EvaluationContext("acme"))
    assert (metered.flag_metadata["usage"], metered.flag_metadata["allocation"]) == (1, 3)


def test_context_attributes_map_to_company_and_user_keys(client: OpenFeatureClient) -> None:
    ctx = EvaluationContext(attributes={"company": {"id": "ACME"}, "user": {"email": "a@example.com"}})
    details = client.get_boolean_details("new-dashboard", False, ctx)
    assert details.value is True
    assert details.flag_metadata["user_id"] == "u1"
    # No context at all: evaluated without company (rules needing one do not match).
    assert client.get_boolean_details("sso", True).value is False


def test_errors_map_to_openfeature_codes(client: OpenFeatureClient) -> None:
    missing = client.get_boolean_details("no-such-flag", True, EvaluationContext("acme"))
    assert (missing.value, missing.error_code, missing.reason) == (
        True,
        ErrorCode.FLAG_NOT_FOUND,
        Reason.ERROR,
    )
    bad = client.get_boolean_details("sso", False, EvaluationContext(attributes={"company": ["acme"]}))
    assert bad.error_code == ErrorCode.INVALID_CONTEXT
    extra = EvaluationContext("acme", attributes={"company": {"unknown": "x"}})
    assert client.get_boolean_details("sso", False, extra).value is True  # an unmatched extra key is fine
    assert client.get_string_details("sso", "x").error_code == ErrorCode.TYPE_MISMATCH
    assert client.get_integer_value("sso", 7) == 7


def test_key_conflict_is_invalid_context() -> None:
    other = Company(id="co_x", keys={"slug": "acme-slug"})
    provider = SyncdProvider(Replica(loader=lambda: (flags(), [acme(), other], [])))
    provider.initialize(EvaluationContext())
    ctx = EvaluationContext("acme", attributes={"company": {"slug": "acme-slug"}})  # two companies
    result = provider.resolve_boolean_details("sso", False, ctx)
    assert (result.value, result.error_code) == (False, ErrorCode.INVALID_CONTEXT)


def test_not_ready_provider_reports_provider_not_ready() -> None:
    replica = Replica()
    api.set_provider(SyncdProvider(replica, ready_timeout=0.01), "syncd-empty")
    client = api.get_client("syncd-empty")
    try:
        wait_for(lambda: client.get_provider_status() == ProviderStatus.ERROR, timeout=2)
        details = client.get_boolean_details("sso", False, EvaluationContext("acme"))
        assert details.error_code == ErrorCode.PROVIDER_NOT_READY
        assert details.value is False
        replica.load(flags(), [acme()])  # data arrives later: the provider announces it
        wait_for(lambda: client.get_provider_status() == ProviderStatus.READY, timeout=2)
        assert client.get_boolean_value("sso", False, EvaluationContext("acme")) is True
    finally:
        api.shutdown()


def test_track_reports_usage_through_the_tracker() -> None:
    receiver = Receiver()
    tracker = UsageTracker(receiver.url, "sk", flush_interval=3600, tick=3600)
    api.set_provider(SyncdProvider(loaded(), tracker=tracker), "syncd-track")
    try:
        api.get_client("syncd-track").track("api-call", EvaluationContext("acme"))
        tracker.flush()
        assert receiver.events[0]["body"] == {"event": "api-call", "quantity": 1, "company": {"id": "acme"}}
    finally:
        api.shutdown()
        receiver.close()


@pytest.mark.redis
def test_redis_backed_provider_goes_stale_and_recovers(redis_url: str) -> None:
    writer = Writer(redis_url, prefix())
    writer.seed()
    host, port = redis_url.split("//")[1].split("/")[0].split(":")
    proxy = TcpProxy((host, int(port)))
    proxy.start()
    replica = RedisReplica(proxy.url, prefix=writer.p, block_seconds=0.2, socket_timeout=0.5)
    api.set_provider_and_wait(SyncdProvider(replica), "syncd-redis")
    client = api.get_client("syncd-redis")
    try:
        assert client.get_provider_status() == ProviderStatus.READY
        assert client.get_boolean_value("sso", False, EvaluationContext("acme")) is True
        proxy.stop()
        wait_for(lambda: replica.stale, timeout=3)
        stale = client.get_boolean_details("sso", False, EvaluationContext("acme"))
        assert (stale.value, stale.reason, stale.flag_metadata["stale"]) == (True, Reason.STALE, True)
        proxy.start()
        wait_for(lambda: not replica.stale, timeout=5)
        assert (
            client.get_boolean_details("sso", False, EvaluationContext("acme")).reason
            == Reason.TARGETING_MATCH
        )
    finally:
        api.shutdown()
        proxy.stop()
        writer.cleanup()
