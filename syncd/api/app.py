"""The daemon's Starlette application."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute

from ..services.changes import Changed
from ..stripe_sync.webhook import StripeWebhookApp, inbox_committer
from ..stripe_sync.webhook import routes as stripe_webhook_routes
from . import health, openapi
from .auth import ApiKeyMiddleware, check_coverage
from .errors import EXCEPTION_HANDLERS
from .fastpath import FastCheckApp
from .group_commit import GroupCommitter
from .http import EntitlementsListener
from .middleware import BodySizeLimitMiddleware, RequestContextMiddleware
from .routes import api_routes

if TYPE_CHECKING:
    from ..daemon import Daemon


def all_routes() -> list[BaseRoute]:
    """Every route the app serves (no daemon needed: the OpenAPI document is built from these)."""
    return [*health.routes, *stripe_webhook_routes, *api_routes(), *openapi.routes]


def create_app(daemon: Daemon) -> Starlette:
    routes = all_routes()
    check_coverage(routes)
    committer = inbox_committer(daemon)
    app = Starlette(
        routes=routes,
        middleware=[
            # Stripe's deliveries skip the stack too (the intake's cost is mostly the stack's).
            Middleware(StripeWebhookApp, daemon=daemon, committer=committer),
            # Outermost: warm flag checks are answered before the rest of the stack.
            Middleware(FastCheckApp, daemon=daemon),
            Middleware(RequestContextMiddleware, metrics=daemon.metrics),
            Middleware(BodySizeLimitMiddleware, max_bytes=daemon.settings.server.max_body_bytes),
            Middleware(ApiKeyMiddleware, daemon=daemon),
        ],
        exception_handlers=dict(EXCEPTION_HANDLERS),
    )
    app.state.daemon = daemon
    app.state.inbox_committer = committer

    # Called with the company ids (or "all") whose entitlements may have changed, after each
    # committed API mutation: the store reads the change log at once (read-your-writes).
    def follow(_changed: Changed) -> None:
        daemon.store.follow()

    listeners: list[EntitlementsListener] = [follow]
    app.state.entitlements_listeners = listeners

    def notify(changed: Changed) -> None:
        for listener in listeners:
            listener(changed)

    # Tracked usage (the ingest hot path): the store marks the companies itself instead of
    # reading the change log back after every group commit.
    def usage_moved(changed: frozenset[str]) -> None:
        daemon.store.usage_moved(changed)
        for listener in listeners:
            if listener is not follow:
                listener(changed)

    app.state.group_committer = GroupCommitter(daemon.engine, notify, usage_moved)
    return app
