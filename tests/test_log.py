"""Logging: one pipeline for structlog and stdlib loggers, secrets never rendered."""

from __future__ import annotations

import io
import json
import logging

import structlog

from syncd.log import configure_logging


def test_json_lines_with_context_and_stdlib_routing() -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream=stream)
    with structlog.contextvars.bound_contextvars(request_id="req-1"):
        structlog.get_logger("syncd.test").info("hello", answer=42)
        logging.getLogger("uvicorn.error").warning("from stdlib")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines[0]["event"] == "hello" and lines[0]["answer"] == 42 and lines[0]["request_id"] == "req-1"
    assert lines[1]["event"] == "from stdlib" and lines[1]["logger"] == "uvicorn.error"


def test_secrets_are_redacted_by_key_and_by_shape() -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream=stream)
    log = structlog.get_logger("syncd.test")
    log.info("calling", api_key="sk_test_abcdefgh123", url="postgresql://app:hunter2@db/x")
    log.info("oops sk_live_ZZZZZZZZ999 and whsec_QQQQQQQQ and sch_dev_KKKKKKKKKK")
    logging.getLogger("stripe").error("key=%s", "sk_test_fromstdlib999")
    text = stream.getvalue()
    for secret in ("abcdefgh123", "hunter2", "ZZZZZZZZ999", "QQQQQQQQ", "KKKKKKKKKK", "fromstdlib999"):
        assert secret not in text
    assert "app:***@db" in text


def test_console_format_is_human_readable() -> None:
    stream = io.StringIO()
    configure_logging("info", "console", stream=stream)
    structlog.get_logger("syncd.test").info("readable", n=1)
    out = stream.getvalue()
    assert "readable" in out and "n=1" in out and not out.lstrip().startswith("{")
