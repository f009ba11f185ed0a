"""Security properties beyond the route matrix: secrets never logged, Stripe signatures cannot be
replayed or aged past the tolerance, bodies are size-limited, and SQL is only ever built with
bound parameters."""

from __future__ import annotations

import ast
import datetime as dt
import hashlib
import hmac
import io
import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from freezegun import freeze_time
from sqlalchemy import func, select
from starlette.testclient import TestClient

from syncd.api import create_app
from syncd.apikeys import create_key
from syncd.config import load_settings
from syncd.daemon import Daemon
from syncd.db import session_scope
from syncd.log import configure_logging
from syncd.models import InboxEvent

ROOT = Path(__file__).resolve().parents[2]
MAX_BODY = 4096


def sign(body: bytes, secret: str, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={hmac.new(secret.encode(), f'{t}.'.encode() + body, hashlib.sha256).hexdigest()}"


def stripe_event(event_id: str, event_type: str = "payout.paid") -> bytes:
    body = {
        "id": event_id,
        "object": "event",
        "type": event_type,
        "created": 1_790_000_000,
        "data": {"object": {}},
    }
    return json.dumps(body).encode()


class Env:
    def __init__(self, tmp: Path, database_url: str) -> None:
        self.stripe_key = "sk_test_" + secrets.token_hex(12)
        self.webhook_secret = "whsec_" + secrets.token_hex(12)
        settings = load_settings(
            None,
            environ={
                "SYNCD_DATA_DIR": str(tmp),
                "SYNCD_DATABASE_URL": database_url,
                "SYNCD_CATALOG_PATH": "",
                "SYNCD_STRIPE_API_KEY": self.stripe_key,
                "SYNCD_STRIPE_WEBHOOK_SECRET": self.webhook_secret,
                "SYNCD_STRIPE_WEBHOOK_TOLERANCE_S": "300",
                "SYNCD_SERVER_MAX_BODY_BYTES": str(MAX_BODY),
                "SYNCD_SCHEDULER_ENABLED": "false",
            },
        )
        self.daemon = Daemon(settings)
        self.daemon.prepare()
        with session_scope(self.daemon.engine) as session:
            self.keys = {kind: create_key(session, kind)[1] for kind in ("secret", "publishable", "readonly")}
        self.client = TestClient(create_app(self.daemon))

    def inbox_count(self) -> int:
        with self.daemon.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(InboxEvent)).scalar_one())


@pytest.fixture
def env(tmp_path: Path, database_url: str) -> Iterator[Env]:
    e = Env(tmp_path, database_url)
    yield e
    e.daemon.close()


# --- secrets never reach a log line ---------------------------------------------------------------
def test_secrets_never_appear_in_logs(tmp_path: Path, sqlite_url: str) -> None:
    stream = io.StringIO()
    configure_logging("debug", "json", stream=stream)
    try:
        env = Env(tmp_path, sqlite_url)
        c, secret_key = env.client, env.keys["secret"]
        wrong = "sch_dev_" + secrets.token_hex(16)
        c.get("/companies", headers={"X-Schematic-Api-Key": secret_key})
        c.post("/companies", json={"keys": {"id": "acme"}}, headers={"X-Schematic-Api-Key": secret_key})
        c.get("/companies", headers={"X-Schematic-Api-Key": wrong})
        c.post("/batch", json={"events": []}, headers={"X-Schematic-Api-Key": env.keys["publishable"]})
        c.post("/flags/check", json={}, headers={"X-Schematic-Api-Key": env.keys["readonly"]})
        made = c.post(
            "/webhooks",
            json={"name": "h", "url": "http://127.0.0.1:9/x", "request_types": ["company.updated"]},
            headers={"X-Schematic-Api-Key": secret_key},
        )
        outbound_secret = made.json()["data"]["secret"]
        body = stripe_event("evt_logged")
        c.post("/webhooks/stripe", content=body, headers={"Stripe-Signature": sign(body, env.webhook_secret)})
        c.post(
            "/webhooks/stripe", content=body, headers={"Stripe-Signature": sign(body, "whsec_" + "0" * 24)}
        )
        env.daemon.close()
    finally:
        configure_logging("info", "auto")
    text = stream.getvalue()
    assert "stripe_webhook_received" in text and "stripe_webhook_bad_signature" in text  # logs were captured
    for name, value in {
        "secret key": secret_key,
        "publishable key": env.keys["publishable"],
        "readonly key": env.keys["readonly"],
        "wrong key": wrong,
        "Stripe API key": env.stripe_key,
        "Stripe webhook secret": env.webhook_secret,
        "outbound webhook secret": outbound_secret,
    }.items():
        assert value and value[10:] not in text, f"{name} appears in the logs"


# --- Stripe signatures: stale, wrong, replayed -------------------------------------------------
def test_stale_wrong_and_replayed_stripe_signatures(env: Env) -> None:
    c, secret_ = env.client, env.webhook_secret
    body = stripe_event("evt_replay", "customer.subscription.updated")
    now = int(time.time())
    refused = {
        "older than the 300 s tolerance": sign(body, secret_, now - 301),
        "wrong secret": sign(body, "whsec_" + "1" * 24),
        "signature of another body": sign(stripe_event("evt_other"), secret_),
        "no v1 signature": f"t={now}",
        "garbage": "t=abc,v1=zz",
    }
    for why, header in refused.items():
        response = c.post("/webhooks/stripe", content=body, headers={"Stripe-Signature": header})
        assert response.status_code == 400, why
        assert response.json()["code"] == "invalid_signature", why
    assert env.inbox_count() == 0
    header = sign(body, secret_, now)
    first = c.post("/webhooks/stripe", content=body, headers={"Stripe-Signature": header})
    assert first.status_code == 200 and first.json()["status"] == "pending"
    # The same delivery replayed within the tolerance: idempotent by event id.
    for replay in (header, sign(body, secret_)):
        again = c.post("/webhooks/stripe", content=body, headers={"Stripe-Signature": replay})
        assert again.status_code == 200 and again.json()["status"] == "duplicate"
    assert env.inbox_count() == 1
    # The captured header replayed after the tolerance: refused, even with a new event id's body.
    with freeze_time(dt.datetime.fromtimestamp(now + 301, dt.UTC)):
        late = c.post("/webhooks/stripe", content=body, headers={"Stripe-Signature": header})
    assert late.status_code == 400
    assert env.inbox_count() == 1


# --- body size limits -------------------------------------------------------------------------
BODY_LIMITED = [
    ("/batch", "publishable"),
    ("/companies", "secret"),
    ("/webhooks/stripe", None),
    ("/flags/check", "readonly"),
]


def test_oversized_bodies_get_a_413_and_change_nothing(tmp_path: Path, sqlite_url: str) -> None:
    env = Env(tmp_path, sqlite_url)  # the limit is middleware: the same for every backend
    before = env.inbox_count()
    big = b'{"pad": "' + b"x" * MAX_BODY + b'"}'
    exact = b'{"pad": "' + b"x" * (MAX_BODY - 11) + b'"}'
    assert len(exact) == MAX_BODY

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit applies while reading
        for i in range(0, len(big), 1000):
            yield big[i : i + 1000]

    try:
        for path, kind in BODY_LIMITED:
            headers = {"X-Schematic-Api-Key": env.keys[kind]} if kind else {}
            headers["content-type"] = "application/json"
            for content in (big, chunks()):
                response = env.client.post(path, content=content, headers=headers)
                assert response.status_code == 413, (path, response.text)
                assert response.json() == {
                    "error": f"request body larger than {MAX_BODY} bytes",
                    "code": "payload_too_large",
                    "details": {"max_bytes": MAX_BODY},
                }
            # At the limit, the request reaches the handler (whatever it then answers).
            assert env.client.post(path, content=exact, headers=headers).status_code != 413, path
        assert env.inbox_count() == before
    finally:
        env.daemon.close()


# --- SQL only through bound parameters ----------------------------------------------------------
SQL_CALLS = {"text", "execute", "exec", "exec_driver_sql", "executemany", "execute_values"}
# DDL on generated identifiers (database names cannot be bound parameters), test/bench only.
DDL_ALLOWED = ("CREATE DATABASE", "DROP DATABASE", "TRUNCATE ")


def _dynamic(node: ast.expr) -> bool:
    """A string built at run time: f-string, % or + formatting, or .format()."""
    if isinstance(node, ast.JoinedStr):
        return any(isinstance(v, ast.FormattedValue) for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod | ast.Add):
        return True
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format"


def dynamic_sql(path: Path, root: Path = ROOT) -> list[str]:
    tree = ast.parse(path.read_text())
    built: set[str] = set()  # names assigned a dynamically built string anywhere in the module
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and _dynamic(node.value):
            built |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and node.args):
            continue
        func_ = node.func
        name = (
            func_.attr
            if isinstance(func_, ast.Attribute)
            else func_.id
            if isinstance(func_, ast.Name)
            else ""
        )
        arg = node.args[0]
        if name in SQL_CALLS and (_dynamic(arg) or (isinstance(arg, ast.Name) and arg.id in built)):
            found.append(f"{path.relative_to(root)}:{node.lineno}: {ast.unparse(arg)[:120]}")
    return found


def test_syncd_builds_no_sql_from_strings() -> None:
    offenders = [hit for path in sorted((ROOT / "syncd").rglob("*.py")) for hit in dynamic_sql(path)]
    assert offenders == [], "SQL must use bound parameters (SQLAlchemy expressions or :name binds)"


def test_tests_and_benchmarks_format_sql_only_for_ddl() -> None:
    paths = [
        *(ROOT / "tests").rglob("*.py"),
        *(ROOT / "bench").rglob("*.py"),
        *(ROOT / "adapters").rglob("*.py"),
    ]
    offenders = [
        hit for path in sorted(paths) for hit in dynamic_sql(path) if not any(d in hit for d in DDL_ALLOWED)
    ]
    assert offenders == []


def test_the_scanner_catches_formatted_sql(tmp_path: Path) -> None:
    bad = tmp_path / "probe.py"
    bad.write_text(
        "def f(conn, text, x):\n"
        "    conn.execute(text(f'SELECT * FROM t WHERE id = {x}'))\n"
        "    q = 'SELECT %s' % x\n"
        "    conn.exec_driver_sql(q)\n"
        "    conn.execute(text('SELECT * FROM t WHERE id = :x'), {'x': x})\n"
    )
    assert sorted(h.split(": ", 1)[0].rsplit(":", 1)[1] for h in dynamic_sql(bad, tmp_path)) == ["2", "4"]
