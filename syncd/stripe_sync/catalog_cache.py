"""Catalog lookups shared across the applier's batches while the catalog is unchanged.

Mapping a batch reads a dozen small catalog facts (which plan a price is, a plan's published
version, whether a version grants credits, ...). Read per batch, they were a fixed cost of
every batch, most of the applier's time at a steady trickle of events. They are kept here per
engine and dropped as soon as a catalog table changes.

Change detection on Postgres: one statement reads each catalog table's row count and newest
``xmin`` (the id of the transaction that wrote a row version). An insert or update raises the
newest ``xmin``, a delete lowers the count, so any committed catalog write changes the stamp.
SQLite gets a fresh cache per batch (its deployments are small, and it has no ``xmin``).
"""

from __future__ import annotations

import threading

from sqlalchemy import text
from sqlmodel import Session

from .mapping import CatalogCache

# One (row count, newest xmin) pair per catalog table that mapping reads.
_STAMP = text(
    "SELECT "
    "(SELECT count(*) FROM catalog_settings), (SELECT max(xmin::text::bigint) FROM catalog_settings), "
    "(SELECT count(*) FROM plan), (SELECT max(xmin::text::bigint) FROM plan), "
    "(SELECT count(*) FROM plan_version), (SELECT max(xmin::text::bigint) FROM plan_version), "
    "(SELECT count(*) FROM plan_price), (SELECT max(xmin::text::bigint) FROM plan_price), "
    "(SELECT count(*) FROM plan_entitlement), (SELECT max(xmin::text::bigint) FROM plan_entitlement), "
    "(SELECT count(*) FROM plan_credit_grant), (SELECT max(xmin::text::bigint) FROM plan_credit_grant), "
    "(SELECT count(*) FROM trait_definition), (SELECT max(xmin::text::bigint) FROM trait_definition) "
)
_lock = threading.Lock()
_caches: dict[int, tuple[tuple[object, ...], CatalogCache]] = {}


def catalog_for(session: Session) -> CatalogCache:
    """The cache to map this batch with: the previous batch's if the catalog is unchanged."""
    bind = session.get_bind()
    if bind.dialect.name != "postgresql":
        return CatalogCache()
    row = session.execute(_STAMP).one()
    stamp = tuple(row)
    key = id(bind)
    with _lock:
        found = _caches.get(key)
        if found is not None and found[0] == stamp:
            return found[1]
        cache = CatalogCache()
        _caches[key] = (stamp, cache)
        return cache
