"""Users: upsert by any key with company memberships, lookup, listing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import exists, or_
from sqlmodel import Session, col, select

from ..exceptions import NotFoundError
from ..models import Company, CompanyMembership, CompanyPlan, User, UserKey, utcnow
from . import keys as entity_keys
from .audit import SYSTEM, Actor, record, snapshot
from .changes import entitlements_changed, record_event
from .common import FIRST_PAGE, Page, check_name, require, require_all, text_match
from .traits import set_traits


def _companies(
    session: Session,
    company: Mapping[str, str] | None,
    companies: Sequence[Mapping[str, str]] | None,
    company_id: str | None,
    company_ids: Sequence[str] | None,
) -> list[str]:
    """Company ids named by any of Schematic's four spellings (each must exist)."""
    ids: list[str] = []
    for keys in [*([company] if company else []), *(companies or [])]:
        found: Company = entity_keys.lookup(session, entity_keys.COMPANY_KEYS, keys)
        ids.append(found.id)
    named = [*([company_id] if company_id else []), *(company_ids or [])]
    ids.extend(c.id for c in require_all(session, Company, named, "company"))
    return list(dict.fromkeys(ids))


def upsert_user(
    session: Session,
    *,
    keys: Mapping[str, str],
    name: str | None = None,
    traits: Mapping[str, Any] | None = None,
    user_id: str | None = None,
    last_seen_at: datetime | None = None,
    remove_keys: Sequence[str] = (),
    update_only: bool = False,
    company: Mapping[str, str] | None = None,
    companies: Sequence[Mapping[str, str]] | None = None,
    company_id: str | None = None,
    company_ids: Sequence[str] | None = None,
    actor: Actor = SYSTEM,
) -> tuple[User, bool]:
    """Create or update the user the keys address and add the named company memberships."""
    entity_keys.validate_keys(keys, required=user_id is None)
    check_name(name)
    member_of = _companies(session, company, companies, company_id, company_ids)
    found = entity_keys.resolve(session, entity_keys.USER_KEYS, keys, user_id)
    created = found is None
    if found is None:
        if update_only:
            raise NotFoundError("no user matches these keys", code="user_not_found")
        user = User(name=name or "")
        session.add(user)
        session.flush()
        before = None
    else:
        user = require(session, User, found, "user")
        before = snapshot(user)
    if name is not None:
        user.name = name
    if last_seen_at is not None:
        user.last_seen_at = last_seen_at
    entity_keys.remove_keys(session, entity_keys.USER_KEYS, user.id, remove_keys)
    session.flush()
    entity_keys.set_keys(session, entity_keys.USER_KEYS, user.id, keys)
    if traits:
        set_traits(session, "user", user.id, traits)
    existing = set(
        session.exec(
            select(CompanyMembership.company_id).where(col(CompanyMembership.user_id) == user.id)
        ).all()
    )
    joined = [cid for cid in member_of if cid not in existing]
    for cid in joined:
        session.add(CompanyMembership(company_id=cid, user_id=user.id))
    user.updated_at = utcnow()
    session.add(user)
    session.flush()
    record(
        session,
        actor,
        "user.created" if created else "user.updated",
        "user",
        user.id,
        before=before,
        after={**(snapshot(user) or {}), "companies_joined": joined},
    )
    if joined:
        entitlements_changed(session, joined)  # user counts feed seat-style entitlements
    record_event(session, "user.changed", None, {"user_id": user.id})
    return user, created


def get_user(session: Session, user_id: str) -> User:
    return require(session, User, user_id, "user")


def lookup_user(session: Session, keys: Mapping[str, str]) -> User:
    user: User = entity_keys.lookup(session, entity_keys.USER_KEYS, keys)
    return user


def list_users(
    session: Session,
    *,
    company_id: str | None = None,
    ids: Sequence[str] | None = None,
    plan_id: str | None = None,
    q: str | None = None,
    page: Page = FIRST_PAGE,
) -> list[User]:
    query = select(User)
    if ids is not None:
        query = query.where(col(User.id).in_(ids))
    if company_id is not None:
        query = query.where(
            exists().where(
                col(CompanyMembership.user_id) == User.id, col(CompanyMembership.company_id) == company_id
            )
        )
    if plan_id is not None:
        query = query.where(
            exists().where(
                col(CompanyMembership.user_id) == User.id,
                col(CompanyPlan.company_id) == CompanyMembership.company_id,
                col(CompanyPlan.plan_id) == plan_id,
            )
        )
    if q:
        by_key = exists().where(col(UserKey.user_id) == User.id, text_match(q, UserKey.value))
        query = query.where(or_(text_match(q, User.name, User.id), by_key))
    query = query.order_by(col(User.created_at).desc(), col(User.id).desc())
    return list(session.exec(page.apply(query)).all())
