"""Stripe client discipline against a scripted loopback HTTP server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import stripe

from syncd.config import load_settings
from syncd.stripe_api import TokenBucket, build_client, idempotency_key, is_own_request


class Script:
    """Responses to serve in order, and the requests seen."""

    def __init__(self) -> None:
        self.responses: list[tuple[int, dict[str, str]]] = []
        self.seen: list[dict[str, str]] = []


@pytest.fixture
def server() -> Iterator[tuple[str, Script]]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def _reply(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            self.rfile.read(length)
            self.headers_dict = {k.lower(): v for k, v in self.headers.items()}
            script.seen.append({**self.headers_dict, "path": self.path, "method": self.command})
            status, extra = script.responses.pop(0) if script.responses else (200, {})
            body = json.dumps(
                {"id": "cus_1", "object": "customer"}
                if status == 200
                else {"error": {"message": "x", "type": "api_error"}}
            ).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("request-id", f"req_{len(script.seen)}")
            for k, v in extra.items():
                self.send_header(k, v)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _reply

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", script
    httpd.shutdown()


def client_for(base: str, tmp_path: Path, sleeps: list[float]) -> stripe.StripeClient:
    (tmp_path / "syncd.toml").write_text("")
    settings = load_settings(tmp_path / "syncd.toml", environ={"SYNCD_STRIPE_API_KEY": "sk_test_123"})
    client, _ = build_client(settings, api_base=base, sleep=sleeps.append)
    return client


def test_requests_carry_the_pinned_api_version(server: tuple[str, Script], tmp_path: Path) -> None:
    base, script = server
    client_for(base, tmp_path, []).v1.customers.retrieve("cus_1")
    assert (
        script.seen[0]["stripe-version"]
        == load_settings(tmp_path / "syncd.toml", environ={}).stripe.api_version
    )


def test_429_is_retried_after_retry_after_with_the_same_idempotency_key(
    server: tuple[str, Script], tmp_path: Path
) -> None:
    base, script = server
    script.responses = [(429, {"Retry-After": "2"}), (429, {"Retry-After": "1"}), (200, {})]
    sleeps: list[float] = []
    customer = client_for(base, tmp_path, sleeps).v1.customers.create(
        {"email": "a@example.com"}, {"idempotency_key": idempotency_key("customer", "comp_1")}
    )
    assert customer.id == "cus_1"
    keys = {s["idempotency-key"] for s in script.seen}
    assert len(script.seen) == 3
    assert keys == {"syncd-customer:comp_1"}
    assert 2.0 <= sleeps[0] <= 2.2
    assert 1.0 <= sleeps[1] <= 1.1


def test_5xx_is_retried_by_the_sdk_with_the_same_key_and_then_raises(
    server: tuple[str, Script], tmp_path: Path
) -> None:
    base, script = server
    script.responses = [(500, {}), (500, {}), (500, {})]
    with pytest.raises(stripe.APIError):
        client_for(base, tmp_path, []).v1.customers.create({"email": "a@example.com"})
    assert len(script.seen) == 3  # 1 + max_network_retries (2)
    assert len({s["idempotency-key"] for s in script.seen}) == 1


def test_persistent_429_gives_up_after_a_bounded_number_of_attempts(
    server: tuple[str, Script], tmp_path: Path
) -> None:
    base, script = server
    script.responses = [(429, {"Retry-After": "0"})] * 10
    with pytest.raises(stripe.RateLimitError):
        client_for(base, tmp_path, []).v1.customers.retrieve("cus_1")
    assert len(script.seen) == 6


def test_token_bucket_paces_to_its_rate() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    bucket = TokenBucket(10, capacity=1, clock=lambda: now[0], sleep=sleep)
    for _ in range(21):
        bucket.acquire()
    assert now[0] == pytest.approx(2.0, abs=1e-6)  # 1 immediate + 20 at 10/s


def test_own_requests_are_recognised_by_idempotency_prefix() -> None:
    assert is_own_request({"request": {"id": "req_1", "idempotency_key": idempotency_key("x")}})
    assert not is_own_request({"request": {"id": "req_1", "idempotency_key": "dashboard-123"}})
    assert not is_own_request({"request": None})
