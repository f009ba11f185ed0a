"""Pieces of the lean ASGI paths that answer hot requests before Starlette's stack
(``POST /flags/{key}/check`` in :mod:`.fastpath`, ``POST /webhooks/stripe`` in
:mod:`syncd.stripe_sync.webhook`): one pass over the headers, a bounded body read that hands
anything unusual to the full app with what was read replayed, and the JSON response."""

from __future__ import annotations

import itertools
import os

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_ID_PREFIX = os.urandom(6).hex()  # request ids unique per process without a syscall each
_ids = itertools.count(1)


def scan_headers(scope: Scope, wanted: bytes, max_bytes: int) -> tuple[bytes | None, int, bytes | None]:
    """(the ``wanted`` header's value, the content length (-1: none; over ``max_bytes`` when
    unreadable), the caller's request id) in one pass over the raw headers."""
    value = request_id = None
    length = -1
    for name, raw in scope["headers"]:
        if name == wanted:
            value = raw
        elif name == b"content-length":
            length = int(raw) if raw.isdigit() else max_bytes + 1
        elif name == b"x-request-id":
            request_id = raw
    return value, length, request_id


async def read_body(
    scope: Scope, receive: Receive, send: Send, app: ASGIApp, max_bytes: int, *, replay_other: bool = True
) -> bytes | None:
    """The whole body, or None once the full app has been handed the request (a body over
    ``max_bytes``, or, with ``replay_other``, a message other than body: what was read is
    replayed to it). Without ``replay_other`` such a message (the client went away) ends it."""
    chunks: list[bytes] = []
    size, more = 0, True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            if replay_other:
                await app(scope, replay(chunks, message, receive), send)
            return None
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        more = message.get("more_body", False)
        if size > max_bytes:
            await app(scope, replay(chunks, None, receive, more), send)
            return None
    return b"".join(chunks)


def replay(chunks: list[bytes], pending: Message | None, receive: Receive, more: bool = True) -> Receive:
    """A receive callable that yields what was already read, then continues with ``receive``."""
    queue: list[Message] = [{"type": "http.request", "body": chunk, "more_body": True} for chunk in chunks]
    if queue:
        queue[-1]["more_body"] = more if pending is None else True
    if pending is not None:
        queue.append(pending)

    async def replayed() -> Message:
        if queue:
            return queue.pop(0)
        return await receive()

    return replayed


def request_id(given: bytes | None) -> bytes:
    return given or f"{_ID_PREFIX}{next(_ids):x}".encode()


async def send_json(send: Send, status: int, body: bytes, rid: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-length", str(len(body)).encode()),
                (b"content-type", b"application/json"),
                (b"x-request-id", rid),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
