"""Adapter discovery through the ``syncd.adapters`` entry-point group."""

from __future__ import annotations

ENTRY_POINT_GROUP = "syncd.adapters"
