"""A minimal webhook receiver for the benchmark, run as its own process.

    python bench/_webhook_receiver.py PORT SECRET

Verifies every POST with ``standardwebhooks`` and answers 200 (400 if the signature is
bad); ``GET /count`` returns ``{"ok": n, "bad": n}``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn
from standardwebhooks import Webhook, WebhookVerificationError

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]


def make_app(secret: str) -> Callable[[dict[str, Any], Receive, Send], Awaitable[None]]:
    verifier = Webhook(secret)
    counts = {"ok": 0, "bad": 0}

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["method"] == "GET":
            out = json.dumps(counts).encode()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": out})
            return
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        try:
            verifier.verify(body, headers)
            counts["ok"] += 1
            status = 200
        except WebhookVerificationError:
            counts["bad"] += 1
            status = 400
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    return app


if __name__ == "__main__":
    port, secret = int(sys.argv[1]), sys.argv[2]
    uvicorn.run(make_app(secret), host="127.0.0.1", port=port, log_level="warning", access_log=False)
