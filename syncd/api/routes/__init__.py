"""Schematic-compatible API routes, one module per resource group."""

from __future__ import annotations

from starlette.routing import Route

from . import billing, companies, credits, entitlements, features, plans, runtime, users, webhooks


def api_routes() -> list[Route]:
    return [
        *runtime.routes,
        *companies.routes,
        *billing.routes,
        *users.routes,
        *features.routes,
        *plans.routes,
        *entitlements.routes,
        *credits.routes,
        *webhooks.routes,
    ]
