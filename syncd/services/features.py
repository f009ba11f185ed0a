"""Features and their 1:1 flags (same key)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import exists, or_
from sqlmodel import Session, col, select

from ..exceptions import ConflictError, NotFoundError, ValidationError
from ..models import CompanyOverride, Feature, Flag, PlanEntitlement, TraitDefinition, utcnow
from .audit import SYSTEM, Actor, record, snapshot
from .changes import ALL, entitlements_changed
from .common import FIRST_PAGE, Page, check_choice, require, text_match
from .inputs import FlagInput

FEATURE_TYPES = ("boolean", "event", "trait", "license")
LIFECYCLE_PHASES = (
    "add_on",
    "alpha",
    "beta",
    "deprecated",
    "ga",
    "inactive",
    "in_plan",
    "internal_testing",
    "legacy",
)
UPDATABLE = ("name", "description", "feature_type", "event_subtype", "trait_id", "lifecycle_phase")
MAX_KEY = 255


def slugify(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug or "feature"


def _check_key(session: Session, key: str, *, ignore_feature: str | None = None) -> None:
    if not key or len(key) > MAX_KEY or key != key.strip():
        raise ValidationError(f"keys must be 1 to {MAX_KEY} characters", code="invalid_key", key=key)
    taken = session.exec(
        select(Feature.id).where(col(Feature.key) == key, col(Feature.id) != (ignore_feature or ""))
    ).first()
    taken_flag = session.exec(
        select(Flag.id).where(
            col(Flag.key) == key,
            or_(col(Flag.feature_id).is_(None), col(Flag.feature_id) != (ignore_feature or "")),
        )
    ).first()
    if taken or taken_flag:
        raise ConflictError(
            f"a feature or flag with key {key!r} already exists", code="duplicate_key", key=key
        )


def _check_shape(session: Session, feature: Feature) -> None:
    check_choice(feature.feature_type, FEATURE_TYPES, "feature_type")
    check_choice(feature.lifecycle_phase, LIFECYCLE_PHASES, "lifecycle_phase")
    if not feature.name or len(feature.name) > 255:
        raise ValidationError("name must be 1 to 255 characters", code="invalid_name")
    if feature.feature_type == "event" and not feature.event_subtype:
        raise ValidationError("event features need an event_subtype", code="missing_event_subtype")
    if feature.feature_type == "trait" and not feature.trait_id:
        raise ValidationError("trait features need a trait_id", code="missing_trait_id")
    if feature.trait_id is not None and session.get(TraitDefinition, feature.trait_id) is None:
        raise NotFoundError(f"trait {feature.trait_id!r} not found", code="trait_not_found")


def create_feature(
    session: Session,
    *,
    name: str,
    description: str = "",
    feature_type: str = "boolean",
    key: str | None = None,
    event_subtype: str | None = None,
    trait_id: str | None = None,
    lifecycle_phase: str | None = None,
    flag: FlagInput | None = None,
    actor: Actor = SYSTEM,
) -> Feature:
    """Create a feature and its flag. The key is the flag's key, else ``key``, else the slugged name."""
    key = flag.key if flag is not None else (key or slugify(name))
    feature = Feature(
        key=key,
        name=name,
        description=description,
        feature_type=feature_type,
        event_subtype=event_subtype,
        trait_id=trait_id,
        lifecycle_phase=lifecycle_phase,
    )
    _check_shape(session, feature)
    _check_key(session, key)
    session.add(feature)
    session.flush()
    row = Flag(
        key=key,
        name=(flag.name if flag else None) or name,
        description=(flag.description if flag else None) or description,
        default_value=bool(flag.default_value) if flag else False,
        feature_id=feature.id,
    )
    session.add(row)
    session.flush()
    record(session, actor, "feature.created", "feature", feature.id, after=snapshot(feature))
    entitlements_changed(session, ALL)
    return feature


def flag_of(session: Session, feature_id: str) -> Flag | None:
    return session.exec(select(Flag).where(col(Flag.feature_id) == feature_id)).first()


def update_feature(
    session: Session,
    feature_id: str,
    *,
    changes: Mapping[str, Any],
    flag: FlagInput | None = None,
    actor: Actor = SYSTEM,
) -> Feature:
    """Apply the given fields (only those present in ``changes``); the feature type cannot change."""
    feature = require(session, Feature, feature_id, "feature")
    before = snapshot(feature)
    unknown = set(changes) - set(UPDATABLE)
    if unknown:
        raise ValidationError(f"cannot update {', '.join(sorted(unknown))}", code="invalid_update")
    new_type = changes.get("feature_type")
    if new_type is not None and new_type != feature.feature_type:
        raise ValidationError("a feature's type cannot be changed", code="feature_type_immutable")
    for name, value in changes.items():
        if value is None and name in ("name", "description", "feature_type"):
            continue
        setattr(feature, name, value)
    _check_shape(session, feature)
    row = flag_of(session, feature.id)
    if flag is not None:
        if flag.key != feature.key:
            _check_key(session, flag.key, ignore_feature=feature.id)
            feature.key = flag.key
        if row is None:
            row = Flag(key=feature.key, name=feature.name, feature_id=feature.id)
        row.key, row.name = feature.key, flag.name or row.name
        row.description = flag.description or row.description
        if flag.default_value is not None:
            row.default_value = flag.default_value
    if row is not None:
        row.updated_at = utcnow()
        session.add(row)
    feature.updated_at = utcnow()
    session.add(feature)
    session.flush()
    record(session, actor, "feature.updated", "feature", feature.id, before=before, after=snapshot(feature))
    entitlements_changed(session, ALL)
    return feature


def delete_feature(session: Session, feature_id: str, *, actor: Actor = SYSTEM) -> None:
    """Delete a feature with its flag, flag rules, plan entitlements and company overrides."""
    feature = require(session, Feature, feature_id, "feature")
    before = snapshot(feature)
    session.delete(feature)  # the database cascades to flag, rules, entitlements, overrides
    session.flush()
    record(session, actor, "feature.deleted", "feature", feature_id, before=before)
    entitlements_changed(session, ALL)


def get_feature(session: Session, feature_id: str) -> Feature:
    return require(session, Feature, feature_id, "feature")


def list_features(
    session: Session,
    *,
    ids: Sequence[str] | None = None,
    feature_types: Sequence[str] | None = None,
    q: str | None = None,
    plan_version_id: str | None = None,
    without_company_override_for: str | None = None,
    without_plan_entitlement_for: str | None = None,
    boolean_require_event: bool | None = None,
    page: Page = FIRST_PAGE,
) -> list[Feature]:
    query = select(Feature)
    if ids is not None:
        query = query.where(col(Feature.id).in_(ids))
    if feature_types is not None:
        query = query.where(col(Feature.feature_type).in_(feature_types))
    if boolean_require_event:
        query = query.where(
            or_(col(Feature.feature_type) != "boolean", col(Feature.event_subtype).is_not(None))
        )
    if plan_version_id is not None:
        query = query.where(
            exists().where(
                col(PlanEntitlement.feature_id) == Feature.id,
                col(PlanEntitlement.plan_version_id) == plan_version_id,
            )
        )
    if without_company_override_for is not None:
        query = query.where(
            ~exists().where(
                col(CompanyOverride.feature_id) == Feature.id,
                col(CompanyOverride.company_id) == without_company_override_for,
            )
        )
    if without_plan_entitlement_for is not None:
        query = query.where(
            ~exists().where(
                col(PlanEntitlement.feature_id) == Feature.id,
                col(PlanEntitlement.plan_id) == without_plan_entitlement_for,
            )
        )
    if q:
        query = query.where(text_match(q, Feature.name, Feature.key, Feature.description))
    query = query.order_by(col(Feature.created_at).desc(), col(Feature.id).desc())
    return list(session.exec(page.apply(query)).all())
