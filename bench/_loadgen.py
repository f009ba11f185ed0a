"""A lean HTTP/1.1 load generator: pre-rendered POSTs on keep-alive sockets, one thread.

wrk is the load generator to prefer, but it is not always installed. Python's ``http.client``
builds every request's headers and parses every answer with the email parser; on a 2-CPU
machine that CPU is taken from the daemon under test (end to end measured 445 events/s with
it against 758 with this client, same code, same host). Here each request is rendered to bytes
before the first send; sending is one ``send`` and answering is a ``recv`` and a byte search
(47 µs of CPU a request on the slower host of 2026-11-22, rendering included; the benchmark
prints it), so what is measured is the daemon.

It runs in a forked child process so that it does not share the GIL with a daemon served
from the benchmark's own process.
"""

from __future__ import annotations

import json
import multiprocessing
import selectors
import socket
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path


def render(port: int, path: str, payloads: list[tuple[bytes, str]]) -> list[bytes]:
    """Each (body, Stripe-Signature) as the bytes of one POST request."""
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
    return [
        f"{head}Stripe-Signature: {sig}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
        for body, sig in payloads
    ]


@dataclass
class _Conn:
    sock: socket.socket
    index: int = -1  # the request awaiting its answer (-1: idle)
    buffer: bytearray = field(default_factory=bytearray)


ANSWER_TIMEOUT_S = 60.0


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=ANSWER_TIMEOUT_S)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _answered(buffer: bytearray) -> tuple[int, int] | None:
    """(status, bytes used) once ``buffer`` holds a whole answer, else None. Answers must carry
    a Content-Length (the daemon's always do); anything else is refused, not misread."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buffer[:end]).lower()
    at = head.find(b"\r\ncontent-length:")
    if at < 0 or b"\r\ntransfer-encoding:" in head:
        raise RuntimeError(f"an answer without a Content-Length: {head[:200]!r}")
    stop = head.find(b"\r\n", at + 2)
    length = int(head[at + 17 : stop if stop >= 0 else len(head)])
    if len(buffer) < end + 4 + length:
        return None
    return int(buffer[9:12]), end + 4 + length


def drive(port: int, requests: list[bytes], connections: int, rate: float | None = None) -> list[float]:
    """Send every request once over ``connections`` keep-alive sockets (optionally paced to
    ``rate``/s); returns each request's send time (``time.time()``). Raises on any non-200.

    Idle connections are used in turn (first in, first out), so none sits idle long enough
    for the server to close it (uvicorn: 5 s); one it closed anyway before answering is
    reopened and its request sent again (the webhook intake treats a repeat as a duplicate)."""
    selector = selectors.DefaultSelector()
    idle: deque[_Conn] = deque()
    for _ in range(max(1, min(connections, len(requests)))):
        conn = _Conn(_connect(port))
        selector.register(conn.sock, selectors.EVENT_READ, conn)
        idle.append(conn)
    sent_at = [0.0] * len(requests)
    errors: list[str] = []
    start, following, answered = time.monotonic(), 0, 0
    while answered < len(requests):
        while idle and following < len(requests):
            if rate is not None and start + following / rate > time.monotonic():
                break
            conn = idle.popleft()
            conn.index = following
            sent_at[following] = time.time()
            conn.sock.sendall(requests[following])
            following += 1
        timeout: float | None = ANSWER_TIMEOUT_S
        if rate is not None and idle and following < len(requests):
            timeout = max(0.0, start + following / rate - time.monotonic())
        ready = selector.select(timeout)
        if not ready and not idle:
            raise RuntimeError(f"no answer in {ANSWER_TIMEOUT_S:.0f} s; errors so far: {errors[:3]}")
        for key, _ in ready:
            conn = key.data
            chunk = conn.sock.recv(65536)
            if not chunk:  # closed by the server: reopen, and resend what it had not answered
                if conn.buffer:
                    raise RuntimeError(f"the daemon closed a connection mid-answer; errors: {errors[:3]}")
                selector.unregister(conn.sock)
                conn.sock.close()
                conn.sock = _connect(port)
                selector.register(conn.sock, selectors.EVENT_READ, conn)
                if conn.index >= 0:
                    conn.sock.sendall(requests[conn.index])
                continue
            conn.buffer += chunk
            done = _answered(conn.buffer)
            if done is None:
                continue
            status, used = done
            if status != 200:
                errors.append(f"{status}: {bytes(conn.buffer[:used])[-200:]!r}")
            del conn.buffer[:used]
            conn.index = -1
            answered += 1
            idle.append(conn)
    for key in list(selector.get_map().values()):
        key.fileobj.close()  # type: ignore[union-attr]
    if errors:
        raise RuntimeError(f"{len(errors)} non-200 answers, e.g. {errors[:3]}")
    return sent_at


def post_forked(
    port: int,
    path: str,
    payloads: list[tuple[bytes, str]],
    ids: list[str],
    connections: int,
    rate: float | None = None,
) -> tuple[dict[str, float], float]:
    """:func:`drive` in a forked child (rendered there before the first send); returns each
    event's send time keyed by ``ids``, and the child's CPU seconds per request."""
    with tempfile.NamedTemporaryFile(suffix=".json") as sent:

        def child() -> None:
            cpu = time.process_time()
            requests = render(port, path, payloads)
            times = drive(port, requests, connections, rate)
            cpu = (time.process_time() - cpu) / max(1, len(requests))
            Path(sent.name).write_text(json.dumps({"times": dict(zip(ids, times, strict=True)), "cpu": cpu}))

        process = multiprocessing.get_context("fork").Process(target=child)
        process.start()
        process.join()
        if process.exitcode != 0:
            raise RuntimeError(f"the load generator failed (exit {process.exitcode})")
        out = json.loads(Path(sent.name).read_text())
        return out["times"], float(out["cpu"])
