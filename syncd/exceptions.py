"""The syncd exception tree.

::

    SyncdError
    ├── ConfigError          invalid configuration (names the key and the fix)
    ├── StartupError         the daemon refuses to start (database unreachable, second instance, ...)
    ├── PluginError          a plugin is broken or implements an unknown hook
    ├── CatalogError         a catalog file is invalid
    ├── ValidationError      bad input from an API or CLI caller (-> HTTP 4xx)
    │   ├── NotFoundError
    │   └── ConflictError
    └── StripeSyncError      Stripe could not be read or written
"""

from __future__ import annotations

from typing import Any


class SyncdError(Exception):
    """Base class of every error syncd raises on purpose."""


class ConfigError(SyncdError):
    """A configuration value is missing or invalid."""

    def __init__(self, key: str, problem: str, fix: str) -> None:
        self.key, self.problem, self.fix = key, problem, fix
        super().__init__(f"{key}: {problem}. Fix: {fix}")


class StartupError(SyncdError):
    """The daemon cannot start; the message is meant for an operator."""


class PluginError(SyncdError):
    """A plugin failed to load or declares hooks syncd does not know."""


class CatalogError(SyncdError):
    """A catalog file is malformed or inconsistent."""


class ValidationError(SyncdError):
    """Bad input from a caller. ``code`` is machine-readable, ``status`` the HTTP status."""

    status = 400

    def __init__(self, message: str, *, code: str = "invalid_request", **details: Any) -> None:
        self.message, self.code, self.details = message, code, details
        super().__init__(message)


class NotFoundError(ValidationError):
    status = 404

    def __init__(self, message: str, *, code: str = "not_found", **details: Any) -> None:
        super().__init__(message, code=code, **details)


class ConflictError(ValidationError):
    status = 409

    def __init__(self, message: str, *, code: str = "conflict", **details: Any) -> None:
        super().__init__(message, code=code, **details)


class StripeSyncError(SyncdError):
    """Stripe could not be read or written."""
