"""The engine's view of the database: loading wire-model state and keeping it fresh."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlmodel import Session

from ..engine import wire
from .catalog_view import CatalogView, load_catalog_view
from .loader import LoadedCompany
from .loader import load_companies as _load_companies
from .store import EntitlementStore
from .users import KeyConflictError


def load_flags(session: Session, now: dt.datetime) -> list[wire.Flag]:
    """Every flag with its hand-written and compiled plan-entitlement rules."""
    return load_catalog_view(session, now).flags


def load_companies(session: Session, ids: Sequence[str] | None, now: dt.datetime) -> dict[str, wire.Company]:
    """Wire companies by id (``ids`` None: all), resolved at ``now``."""
    view = load_catalog_view(session, now)
    return {cid: item.company for cid, item in _load_companies(session, view, ids, now).items()}


__all__ = [
    "CatalogView",
    "EntitlementStore",
    "KeyConflictError",
    "LoadedCompany",
    "load_companies",
    "load_flags",
]
