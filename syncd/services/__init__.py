"""The domain service layer shared by the HTTP API, the CLI and the Stripe sync.

Each function takes an open SQLModel ``Session`` and works inside the caller's transaction:
it validates its input (raising :mod:`syncd.exceptions` errors, which the API turns into
4xx responses), writes an ``AuditLog`` row for each mutation, and reports companies whose
entitlements may have changed through :func:`syncd.services.changes.entitlements_changed`.
The caller commits (or rolls back).

Modules: ``companies``, ``users``, ``traits``, ``keys``, ``features``, ``flags``, ``plans``,
``company_plans``, ``entitlements``, ``overrides``, ``webhooks``; ``changes`` and ``audit``
are the cross-cutting seams, ``inputs`` the nested argument records.
"""

from .audit import SYSTEM, Actor
from .changes import ALL, entitlements_changed, take_entitlement_changes
from .common import Page

__all__ = ["ALL", "SYSTEM", "Actor", "Page", "entitlements_changed", "take_entitlement_changes"]
