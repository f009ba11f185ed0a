"""Fixtures for the Stripe emulator tests.

``api``: a Starlette TestClient on a fresh emulator (fast, in-process).
``server``/``stripe_client``: the emulator served by uvicorn on a free loopback port
(one per test session, reset before each test) driven by the real stripe SDK.
``receiver``: a real local HTTP server that records webhook deliveries.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import stripe
from starlette.testclient import TestClient

from syncd.stripe_emulator import BackgroundServer, EmulatorConfig, create_app

#: 2026-01-01T00:00:00Z: tests start the emulator clock here.
START = 1_767_225_600
DAY = 86_400
API_KEY = "sk_test_emulator"


def make_config(**overrides: Any) -> EmulatorConfig:
    return EmulatorConfig(start_time=START, seed=1234, auto_deliver=False, **overrides)


@pytest.fixture
def api() -> Iterator[TestClient]:
    app = create_app(make_config())
    with TestClient(app, headers={"Authorization": f"Bearer {API_KEY}"}) as client:
        yield client
    app.state.emulator.close()


@pytest.fixture(scope="session")
def _server() -> Iterator[BackgroundServer]:
    with BackgroundServer(make_config()) as server:
        yield server


@pytest.fixture
def server(_server: BackgroundServer) -> BackgroundServer:
    httpx.post(f"{_server.url}/_emulator/reset").raise_for_status()
    return _server


@pytest.fixture
def stripe_client(server: BackgroundServer) -> stripe.StripeClient:
    return stripe.StripeClient(api_key=API_KEY, base_addresses={"api": server.url}, max_network_retries=0)


@pytest.fixture
def control(server: BackgroundServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{server.url}/_emulator", timeout=30) as client:
        yield client


@dataclass
class Received:
    body: bytes
    signature: str
    content_type: str

    @property
    def event(self) -> dict[str, Any]:
        data = json.loads(self.body)
        assert isinstance(data, dict)
        return data


@dataclass
class Receiver:
    """A webhook sink; ``statuses`` scripts the answers (then 200s)."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ids(self) -> list[str]:
        return [r.event["id"] for r in self.received]

    def types(self) -> list[str]:
        return [r.event["type"] for r in self.received]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    sink = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with sink.lock:
                sink.received.append(
                    Received(
                        body, self.headers.get("Stripe-Signature", ""), self.headers.get("Content-Type", "")
                    )
                )
                status = sink.statuses.pop(0) if sink.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    sink.url = f"http://127.0.0.1:{httpd.server_address[1]}/webhooks"
    yield sink
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)
