"""Catalog lookups shared across the applier's batches while the catalog is unchanged.

Mapping a batch reads a dozen small catalog facts (which plan a price is, a plan's published
version, whether a version grants credits, ...). Read per batch, they were a fixed cost of
every batch, most of the applier's time at a steady trickle of events. They are kept here per
engine and dropped as soon as a catalog table changes.

Change detection on Postgres: triggers on every catalog table bump a counter row
(``catalog_stamp``, migration 0009) in the writing transaction; one primary-key read per batch
tells whether anything changed since the lookups were made. SQLite gets a fresh cache per
batch (its deployments are small, and it has no such triggers).
"""

from __future__ import annotations

import threading
import weakref

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session

from .mapping import CatalogCache

#: The catalog tables mapping reads; each has a trigger bumping the stamp (migration 0009,
#: which keeps its own copy of this list, as migrations do).
CATALOG_TABLES = (
    "catalog_settings",
    "plan",
    "plan_version",
    "plan_price",
    "plan_entitlement",
    "plan_credit_grant",
    "trait_definition",
)
_STAMP = text("SELECT version FROM catalog_stamp WHERE id = 1")
_lock = threading.Lock()
# Per engine (one database): weak, so an engine's entry goes with it and a later engine can
# never meet its lookups under the same counter value.
_caches: weakref.WeakKeyDictionary[Engine, tuple[int, CatalogCache]] = weakref.WeakKeyDictionary()


def catalog_for(session: Session) -> CatalogCache:
    """The cache to map this batch with: the previous batch's if the catalog is unchanged."""
    bind = session.get_bind()
    if bind.dialect.name != "postgresql":
        return CatalogCache()
    stamp = session.execute(_STAMP).scalar_one_or_none()
    if stamp is None:  # a schema without the stamp row: nothing to compare with
        return CatalogCache()
    engine = bind.engine
    with _lock:
        found = _caches.get(engine)
        if found is not None and found[0] == stamp:
            return found[1]
        cache = CatalogCache()
        _caches[engine] = (stamp, cache)
        return cache
