"""The daemon's Starlette application."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.middleware import Middleware

from . import health
from .errors import EXCEPTION_HANDLERS
from .middleware import BodySizeLimitMiddleware, RequestContextMiddleware

if TYPE_CHECKING:
    from ..daemon import Daemon


def create_app(daemon: Daemon) -> Starlette:
    app = Starlette(
        routes=[*health.routes],
        middleware=[
            Middleware(RequestContextMiddleware, metrics=daemon.metrics),
            Middleware(BodySizeLimitMiddleware, max_bytes=daemon.settings.server.max_body_bytes),
        ],
        exception_handlers=dict(EXCEPTION_HANDLERS),
    )
    app.state.daemon = daemon
    return app
