"""syncd: a self-hosted entitlement service that keeps Stripe and your product in sync."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
