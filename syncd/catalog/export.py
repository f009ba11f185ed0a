"""Read catalog files (TOML or YAML) and export the database catalog back to one.

Round trip: ``apply_catalog(session, load_catalog(path))`` after ``dump(export_catalog(session))``
was written to ``path`` reports no changes.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import tomli_w
import yaml
from sqlmodel import Session

from syncd.exceptions import CatalogError

from ._state import build, load_state
from .schema import Catalog, FlagSpec, PlanSpec, SettingsSpec, parse_catalog, validate_references

Format = Literal["toml", "yaml"]
_SUFFIXES: dict[str, Format] = {".toml": "toml", ".yaml": "yaml", ".yml": "yaml"}


# --------------------------------------------------------------------------- reading


def loads(text: str, fmt: Format = "toml", *, source: str | None = None) -> Catalog:
    """Parse and validate catalog text; CatalogError (naming the bad field) when invalid."""
    where = f" {source}" if source else ""
    data: Any
    if fmt == "toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise CatalogError(f"invalid TOML in catalog{where}: {exc}") from None
    elif fmt == "yaml":
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise CatalogError(f"invalid YAML in catalog{where}: {exc}") from None
        if data is None:
            data = {}
    else:
        raise CatalogError(f"unknown catalog format {fmt!r} (toml or yaml)")
    if not isinstance(data, Mapping):
        raise CatalogError(f"catalog{where} must be a mapping at the top level, not {type(data).__name__}")
    return parse_catalog(data, source=source)


def load_catalog(path: str | Path) -> Catalog:
    """Load a catalog file; the format follows the suffix (.toml, .yaml, .yml)."""
    path = Path(path)
    fmt = _SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise CatalogError(f"catalog {path}: unknown file type {path.suffix!r} (use .toml, .yaml or .yml)")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CatalogError(f"cannot read catalog {path}: {exc.strerror or exc}") from None
    return loads(text, fmt, source=str(path))


# --------------------------------------------------------------------------- exporting


def export_catalog(session: Session) -> Catalog:
    """The catalog in the database, as a file would declare it (custom plans are left out)."""
    state = load_state(session)
    features = [state.feature_spec(f) for f in state.features]
    feature_by_key = {f.key: f for f in features}
    flags: list[FlagSpec] = []
    for row in state.flags:
        spec = state.flag_spec(row)
        feature = feature_by_key.get(row.key)
        if feature is None:
            flags.append(spec.model_copy(update={"description": spec.description or None}))
            continue
        name = None if spec.name == feature.name else spec.name
        description = None if spec.description == feature.description else spec.description
        if name is None and description is None and not spec.default and not spec.rules:
            continue  # the feature's default flag
        flags.append(spec.model_copy(update={"name": name, "description": description}))
    plans: list[PlanSpec] = []
    for plan in state.plans:
        if plan.is_custom:
            continue
        version = state.export_version(plan.id)
        plans.append(
            build(
                PlanSpec,
                f"plan {plan.key!r}",
                key=plan.key,
                name=plan.name,
                description=plan.description,
                type=plan.plan_type,
                icon=plan.icon,
                trial_days=plan.trial_days,
                stripe_product=plan.stripe_product_id,
                prices=state.prices_spec(version) if version else None,
                entitlements=state.entitlement_specs(version) if version else {},
                credit_grants=state.grant_specs(version) if version else [],
                audience=state.audience_specs(plan),
                audience_priority=plan.audience_priority,
            )
        )
    catalog = Catalog(
        settings=state.settings_spec() or SettingsSpec(),
        traits={state.trait_keys[t.id]: state.trait_spec(t) for t in state.traits},
        credit_types=[state.credit_spec(c) for c in state.credit_types],
        features=features,
        flags=flags,
        plans=plans,
    )
    errors = validate_references(catalog)
    if errors:
        raise CatalogError("the catalog in the database is inconsistent: " + "; ".join(errors))
    return catalog


_DROP_DEFAULTS: dict[str, Any] = {"audience_priority": 0, "behavior": "flat", "migration": "leave"}


def _tidy(value: Any) -> Any:
    """Drop empty collections and a few noisy defaults so exports read like hand-written files."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            item = _tidy(item)
            if item in ([], {}) or (key in _DROP_DEFAULTS and item == _DROP_DEFAULTS[key]):
                continue
            out[key] = item
        return out
    if isinstance(value, list):
        return [_tidy(item) for item in value]
    return value


def to_document(catalog: Catalog) -> dict[str, Any]:
    """The catalog as plain data (what a file holds)."""
    doc: dict[str, Any] = _tidy(catalog.model_dump(mode="json", exclude_none=True))
    doc.setdefault("settings", {})
    for plan in doc.get("plans", []):
        entitlements = plan.get("entitlements", {})
        for key, ent in entitlements.items():  # "type" first, as people write them
            entitlements[key] = {"type": ent["type"], **ent}
    return doc


def dump(catalog: Catalog, fmt: Format = "toml") -> str:
    """Serialize a catalog as TOML or YAML; ``load_catalog`` reads it back to an equal catalog."""
    doc = to_document(catalog)
    if fmt == "toml":
        return tomli_w.dumps(doc)
    if fmt == "yaml":
        return str(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, default_flow_style=False))
    raise CatalogError(f"unknown catalog format {fmt!r} (toml or yaml)")


__all__ = ["dump", "export_catalog", "load_catalog", "loads", "to_document"]
