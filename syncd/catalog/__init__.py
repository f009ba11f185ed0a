"""Catalog as code: declare features, flags, plans and settings in a TOML or YAML file.

::

    from syncd.catalog import apply_catalog, load_catalog
    from syncd.db import make_engine, session_scope

    catalog = load_catalog("config/catalog.toml")
    with session_scope(make_engine(url)) as session:
        diff = apply_catalog(session, catalog, dry_run=False, prune=False)
    print(diff)

``plan_changes`` computes the same diff without writing; ``export_catalog`` + ``dump`` turn a
database back into a file.
"""

from __future__ import annotations

from .apply import apply_catalog
from .diff import CatalogDiff, VersionMigration, plan_changes
from .export import dump, export_catalog, load_catalog, loads
from .schema import Catalog, CatalogValidationError, parse_catalog

__all__ = [
    "Catalog",
    "CatalogDiff",
    "CatalogValidationError",
    "VersionMigration",
    "apply_catalog",
    "dump",
    "export_catalog",
    "load_catalog",
    "loads",
    "parse_catalog",
    "plan_changes",
]
