"""Company overrides: a per-company entitlement for one feature, optionally expiring, with notes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import or_
from sqlmodel import Session, col, select

from ..exceptions import ConflictError, ValidationError
from ..models import Company, CompanyOverride, Feature, OverrideNote, utcnow
from .audit import SYSTEM, Actor, record, snapshot
from .changes import entitlements_changed, record_event
from .common import FIRST_PAGE, Page, require, text_match
from .entitlement_values import normalize, usage_rule_id
from .inputs import EntitlementValue


def _check_expiry(expiration_date: datetime | None) -> None:
    if expiration_date is None:
        return
    if expiration_date.tzinfo is None:
        raise ValidationError("expiration_date needs a timezone", code="invalid_expiration_date")
    if expiration_date <= utcnow():
        raise ValidationError("expiration_date is in the past", code="invalid_expiration_date")


def _add_note(session: Session, override_id: str, note: str | None, actor: Actor) -> None:
    if not note:
        return
    if len(note) > 4096:
        raise ValidationError("notes must be at most 4096 characters", code="invalid_note")
    session.add(
        OverrideNote(
            override_id=override_id,
            note=note,
            external_user_id=actor.actor,
            external_user_name=actor.name or actor.actor_type,
        )
    )


def _values(session: Session, value: EntitlementValue) -> dict[str, Any]:
    if value.soft_limit is not None:
        raise ValidationError("company overrides have no soft_limit", code="invalid_value")
    values = normalize(session, value)
    values.pop("soft_limit")
    return values


def create_company_override(
    session: Session,
    *,
    company_id: str,
    feature_id: str,
    value: EntitlementValue,
    expiration_date: datetime | None = None,
    note: str | None = None,
    actor: Actor = SYSTEM,
) -> CompanyOverride:
    company = require(session, Company, company_id, "company")
    feature = require(session, Feature, feature_id, "feature")
    _check_expiry(expiration_date)
    values = _values(session, value)
    duplicate = session.exec(
        select(CompanyOverride.id).where(
            col(CompanyOverride.company_id) == company.id, col(CompanyOverride.feature_id) == feature.id
        )
    ).first()
    if duplicate:
        raise ConflictError(
            f"company {company.id!r} already has override {duplicate!r} for feature {feature.id!r}",
            code="duplicate_override",
        )
    row = CompanyOverride(
        company_id=company.id,
        feature_id=feature.id,
        expiration_date=expiration_date,
        rule_id_usage_exceeded=usage_rule_id(value.value_type, None),
        **values,
    )
    session.add(row)
    session.flush()
    _add_note(session, row.id, note, actor)
    session.flush()
    record(session, actor, "company.override.created", "company_override", row.id, after=snapshot(row))
    record_event(session, "company.override.created", company.id, {"override": snapshot(row)})
    entitlements_changed(session, [company.id])
    return row


def update_company_override(
    session: Session,
    override_id: str,
    *,
    value: EntitlementValue,
    expiration_date: datetime | None = None,
    note: str | None = None,
    actor: Actor = SYSTEM,
) -> CompanyOverride:
    """Replace the override's value and expiration; a note is appended to its notes."""
    row = require(session, CompanyOverride, override_id, "company override")
    _check_expiry(expiration_date)
    before = snapshot(row)
    for name, column_value in _values(session, value).items():
        setattr(row, name, column_value)
    row.expiration_date = expiration_date
    row.rule_id_usage_exceeded = usage_rule_id(row.value_type, row.rule_id_usage_exceeded)
    row.updated_at = utcnow()
    session.add(row)
    _add_note(session, row.id, note, actor)
    session.flush()
    record(
        session,
        actor,
        "company.override.updated",
        "company_override",
        row.id,
        before=before,
        after=snapshot(row),
    )
    record_event(
        session, "company.override.updated", row.company_id, {"override": snapshot(row), "previous": before}
    )
    entitlements_changed(session, [row.company_id])
    return row


def delete_company_override(session: Session, override_id: str, *, actor: Actor = SYSTEM) -> None:
    row = require(session, CompanyOverride, override_id, "company override")
    before = snapshot(row)
    session.delete(row)  # notes cascade
    session.flush()
    record(session, actor, "company.override.deleted", "company_override", override_id, before=before)
    record_event(session, "company.override.deleted", row.company_id, {"override": before})
    entitlements_changed(session, [row.company_id])


def get_company_override(session: Session, override_id: str) -> CompanyOverride:
    return require(session, CompanyOverride, override_id, "company override")


def override_notes(session: Session, override_id: str) -> list[OverrideNote]:
    return list(
        session.exec(
            select(OverrideNote)
            .where(col(OverrideNote.override_id) == override_id)
            .order_by(col(OverrideNote.created_at), col(OverrideNote.id))
        ).all()
    )


def list_company_overrides(
    session: Session,
    *,
    ids: Sequence[str] | None = None,
    company_ids: Sequence[str] | None = None,
    feature_ids: Sequence[str] | None = None,
    without_expired: bool | None = None,
    q: str | None = None,
    page: Page = FIRST_PAGE,
) -> list[CompanyOverride]:
    query = select(CompanyOverride)
    if ids is not None:
        query = query.where(col(CompanyOverride.id).in_(ids))
    if company_ids is not None:
        query = query.where(col(CompanyOverride.company_id).in_(company_ids))
    if feature_ids is not None:
        query = query.where(col(CompanyOverride.feature_id).in_(feature_ids))
    if without_expired:
        query = query.where(
            or_(
                col(CompanyOverride.expiration_date).is_(None),
                col(CompanyOverride.expiration_date) > utcnow(),
            )
        )
    if q:
        query = (
            query.join(Feature, col(Feature.id) == CompanyOverride.feature_id)
            .join(Company, col(Company.id) == CompanyOverride.company_id)
            .where(text_match(q, Feature.name, Feature.key, Company.name))
        )
    query = query.order_by(col(CompanyOverride.created_at).desc(), col(CompanyOverride.id).desc())
    return list(session.exec(page.apply(query)).all())
