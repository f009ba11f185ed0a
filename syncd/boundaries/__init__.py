"""Time boundaries: the moments something changes for a company without anyone calling us.

Stripe sends no event when a trial ends, an override expires, a scheduled downgrade takes
effect, a usage period rolls over or a credit grant expires. :func:`next_boundary` finds the
next such instant across all companies; :func:`apply_due` persists and publishes everything
due at an instant. The ``boundaries`` job (``syncd.jobs``) sleeps from one to the next.
"""

from __future__ import annotations

from .apply import apply_due
from .scan import next_boundary

__all__ = ["apply_due", "next_boundary"]
