"""A lean HTTP/1.1 load generator: pre-rendered POSTs on keep-alive sockets, one thread.

wrk is the load generator to prefer, but it is not always installed. Python's ``http.client``
spends ~150-250 µs of CPU a request (building headers, parsing the answer with the email
parser), which on a 2-CPU machine is CPU taken from the daemon under test. Here each request
is rendered to bytes before the clock starts; sending is one ``send`` and answering is a
``recv`` and a byte search, ~15-25 µs a request, so what is measured is the daemon.

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


def _answered(buffer: bytearray) -> tuple[int, int] | None:
    """(status, bytes used) once ``buffer`` holds a whole answer, else None."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buffer[:end]).lower()
    at = head.find(b"\r\ncontent-length:")
    length = 0
    if at >= 0:
        stop = head.find(b"\r\n", at + 2)
        length = int(head[at + 17 : stop if stop >= 0 else len(head)])
    if len(buffer) < end + 4 + length:
        return None
    return int(buffer[9:12]), end + 4 + length


def drive(port: int, requests: list[bytes], connections: int, rate: float | None = None) -> list[float]:
    """Send every request once over ``connections`` keep-alive sockets (optionally paced to
    ``rate``/s); returns each request's send time (``time.time()``). Raises on any non-200."""
    selector = selectors.DefaultSelector()
    idle: list[_Conn] = []
    for _ in range(max(1, min(connections, len(requests)))):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = _Conn(sock)
        selector.register(sock, selectors.EVENT_READ, conn)
        idle.append(conn)
    sent_at = [0.0] * len(requests)
    errors: list[str] = []
    start, following, answered = time.monotonic(), 0, 0
    while answered < len(requests):
        while idle and following < len(requests):
            if rate is not None and start + following / rate > time.monotonic():
                break
            conn = idle.pop()
            conn.index = following
            sent_at[following] = time.time()
            conn.sock.sendall(requests[following])
            following += 1
        timeout = None
        if rate is not None and idle and following < len(requests):
            timeout = max(0.0, start + following / rate - time.monotonic())
        for key, _ in selector.select(timeout):
            conn = key.data
            chunk = conn.sock.recv(65536)
            if not chunk:
                raise RuntimeError("the daemon closed a connection")
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
) -> dict[str, float]:
    """:func:`drive` in a forked child (rendered there before the first send); returns each
    event's send time keyed by ``ids``."""
    with tempfile.NamedTemporaryFile(suffix=".json") as sent:

        def child() -> None:
            requests = render(port, path, payloads)
            times = drive(port, requests, connections, rate)
            Path(sent.name).write_text(json.dumps(dict(zip(ids, times, strict=True))))

        process = multiprocessing.get_context("fork").Process(target=child)
        process.start()
        process.join()
        if process.exitcode != 0:
            raise RuntimeError(f"the load generator failed (exit {process.exitcode})")
        times: dict[str, float] = json.loads(Path(sent.name).read_text())
        return times
