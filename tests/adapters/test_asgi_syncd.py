"""The example app against a real running syncd (demo catalog, SQLite): decisions from syncd's
own store (``StoreSource``, an app embedding syncd), metered usage ingested by its ``/batch``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from examples.host_app.app import create_app
from syncd_asgi import UsageTracker, header_identity
from syncd_asgi.embedded import StoreSource
from tests.adapters.asgi_support import wait_for
from tests.api.conftest import DEMO_CATALOG, ApiServer, start_server, unique

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def syncd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    db = Path(tmp_path_factory.mktemp("asgi")) / "syncd.db"
    server, stop = start_server(f"sqlite:///{db}", "sqlite", DEMO_CATALOG)
    try:
        yield server
    finally:
        stop()


def _usage(source: StoreSource, keys: dict[str, str]) -> int | None:
    result = source.check(keys, None, "api-calls")
    assert result is not None and result.entitlement is not None
    return result.entitlement.usage


async def test_example_app_on_a_running_syncd(syncd: ApiServer) -> None:
    keys = {"account": unique("acct")}
    with syncd.http() as api:
        assert api.post("/companies", json={"keys": keys, "name": "Acme"}).status_code == 200
    source = StoreSource(syncd.daemon.store)
    tracker = UsageTracker(
        syncd.base_url, syncd.keys["secret"], replica=source, flush_interval=0.05, tick=0.01
    )
    app = create_app(source, tracker=tracker, identify=header_identity("x-company-key", "account"))
    headers = {"x-company-key": keys["account"]}
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://host") as client:
            refused = await client.get("/sso", headers=headers)  # Free plan: no SSO
            assert refused.status_code == 402
            assert refused.json()["code"] == "feature_not_entitled"
            assert (await client.get("/dashboard", headers=headers)).status_code == 403  # rollout flag
            for _ in range(3):
                assert (await client.post("/query", headers=headers)).status_code == 200
            # The tracker's batches went through syncd's /batch into its store.
            wait_for(lambda: _usage(source, keys) == 3, timeout=10)
            with syncd.http() as api:
                track = {"event": "api-call", "company": keys, "quantity": 997}
                batch = {"events": [{"api_key": syncd.keys["secret"], "type": "track", "body": track}]}
                assert api.post("/batch", json=batch).status_code == 200
            wait_for(lambda: _usage(source, keys) == 1000, timeout=10)
            limited = await client.post("/query", headers=headers)
            assert limited.status_code == 402
            body = limited.json()
            assert (body["code"], body["usage"], body["allocation"]) == ("usage_limit_reached", 1000, 1000)
    finally:
        tracker.close()
    assert tracker.sent == 3 and tracker.dropped == 0
