"""Test support for the ASGI adapter: a small catalog, a Redis writer that mimics syncd's Redis
adapter (Schematic replicator layout + change stream), a TCP proxy to cut Redis off, and a
real HTTP receiver for usage batches."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import redis

from syncd.engine.compile import EntitlementSpec, build_entitlements, compile_plan_rules
from syncd.engine.wire import ENGINE_VERSION_KEY, Company, CompanyMetric, Condition, Flag, Rule, User

NOW = dt.datetime.now(dt.UTC)
CALL_LIMIT = 3

SPECS = [
    EntitlementSpec("pro_sso", "feat_sso", "sso", "flag_sso", "boolean", value_bool=True, plan_id="pro"),
    EntitlementSpec(
        "pro_api_calls",
        "feat_api_calls",
        "api-calls",
        "flag_api_calls",
        "numeric",
        value_numeric=CALL_LIMIT,
        event_subtype="api-call",
        metric_period="all_time",
        plan_id="pro",
    ),
]


def flags() -> list[Flag]:
    dashboard = Rule(
        "rule_dashboard",
        "standard",
        True,
        "beta testers",
        conditions=[Condition("company", "eq", id="cond_dashboard", resource_ids=["co_acme"])],
        flag_id="flag_dashboard",
    )
    return [
        Flag("flag_sso", "sso", False, compile_plan_rules(SPECS, "flag_sso", NOW)),
        Flag("flag_api_calls", "api-calls", False, compile_plan_rules(SPECS, "flag_api_calls", NOW)),
        Flag("flag_dashboard", "new-dashboard", False, [dashboard]),
    ]


def company(cid: str, key: str, plan: str | None, calls_used: int = 0) -> Company:
    co = Company(
        id=cid,
        keys={"id": key},
        base_plan_id=plan,
        plan_ids=[plan] if plan else [],
        metrics=[CompanyMetric("api-call", "all_time", "first_of_month", calls_used, company_id=cid)],
    )
    co.entitlements = build_entitlements(SPECS, co, NOW)
    return co


def acme(calls_used: int = 1) -> Company:
    return company("co_acme", "acme", "pro", calls_used)


def freebie() -> Company:
    return company("co_free", "freebie", None)


def user(uid: str, key: str) -> User:
    return User(uid, keys={"email": key})


def prefix() -> str:
    return f"t{secrets.token_hex(4)}:"


class Writer:
    """Writes the layout syncd's Redis adapter writes, and announces changes on its stream."""

    def __init__(self, url: str, prefix: str, version: str = ENGINE_VERSION_KEY) -> None:
        self.r = redis.Redis.from_url(url, decode_responses=True)
        self.p, self.v = prefix, version

    def publish(self, kind: str, ident: str = "") -> int:
        seq = int(self.r.incr(f"{self.p}syncd:seq"))
        fields = {"seq": str(seq), "type": kind, "id": ident}
        self.r.xadd(f"{self.p}syncd:changes", fields, maxlen=100_000, approximate=True)  # type: ignore[arg-type]
        self.r.publish(f"{self.p}syncd:changes", json.dumps(fields))
        return seq

    def put_flags(self, items: Iterable[Flag], *, announce: bool = True) -> None:
        for flag in items:
            self.r.set(f"{self.p}flags:{self.v}:{flag.key.lower()}", json.dumps(flag.to_wire()))
        if announce:
            self.publish("flags")

    def put_company(self, co: Company, *, announce: bool = True) -> None:
        self.r.set(f"{self.p}company:{self.v}:{co.id}", json.dumps(co.to_wire()))
        for k, val in co.keys.items():
            self.r.set(f"{self.p}company:{self.v}:{k.lower()}:{val.lower()}", co.id)
        if announce:
            self.publish("company", co.id)

    def delete_company(self, co: Company) -> None:
        self.r.delete(f"{self.p}company:{self.v}:{co.id}")
        for k, val in co.keys.items():
            self.r.delete(f"{self.p}company:{self.v}:{k.lower()}:{val.lower()}")
        self.publish("company_deleted", co.id)

    def put_user(self, u: User) -> None:
        self.r.set(f"{self.p}user:{self.v}:{u.id}", json.dumps(u.to_wire()))
        for k, val in u.keys.items():
            self.r.set(f"{self.p}user:{self.v}:{k.lower()}:{val.lower()}", u.id)
        self.publish("user", u.id)

    def delete_user(self, u: User) -> None:
        self.r.delete(f"{self.p}user:{self.v}:{u.id}")
        self.publish("user_deleted", u.id)

    def seed(self) -> None:
        self.put_flags(flags(), announce=False)
        self.put_company(acme(), announce=False)
        self.put_company(freebie(), announce=False)

    def cleanup(self) -> None:
        keys = list(self.r.scan_iter(match=f"{self.p}*", count=1000))
        if keys:
            self.r.delete(*keys)
        self.r.close()


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0, interval: float = 0.01) -> float:
    """Poll until ``predicate()``; returns the seconds it took (fails the test on timeout)."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)
    return time.monotonic() - start


class TcpProxy:
    """A TCP forwarder we can cut and restore, to make Redis "go down" for one client only."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._server: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(16)
        self.port = server.getsockname()[1]
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def stop(self) -> None:
        """Refuse new connections and break the open ones."""
        server, self._server = self._server, None
        if server is not None:
            # shutdown() wakes the thread blocked in accept(); close() alone would not.
            with contextlib.suppress(OSError):
                server.shutdown(socket.SHUT_RDWR)
            server.close()
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


class Receiver:
    """A real HTTP server standing in for syncd's ``/batch``; records each posted body.

    ``statuses``: responses to give, in order, before answering 200 (e.g. [503] to make the
    first post fail).
    """

    def __init__(self, statuses: Iterable[int] = ()) -> None:
        self.posts: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.statuses = list(statuses)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                status = outer.statuses.pop(0) if outer.statuses else 200
                if status == 200:
                    outer.posts.append(json.loads(body))
                    outer.headers.append(dict(self.headers))
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def events(self) -> list[dict[str, Any]]:
        return [e for post in self.posts for e in post["events"]]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
