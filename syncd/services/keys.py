"""Entity keys: any ``{name: value}`` pair addresses one company (or user); ``id`` is reserved.

If the keys (and an explicit id) given to a lookup or upsert address more than one entity,
the request is refused with ConflictError rather than guessing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, or_
from sqlmodel import Session, col, select

from ..exceptions import ConflictError, NotFoundError, ValidationError
from ..models import Company, CompanyKey, User, UserKey

RESERVED_ID_KEY = "id"
MAX_KEYS = 100
MAX_LEN = 255


@dataclass(frozen=True, slots=True)
class KeySpace:
    """Where one entity type keeps its keys."""

    entity: Any  # Company | User
    key_model: Any  # CompanyKey | UserKey
    owner: str  # column on key_model naming the entity
    what: str


COMPANY_KEYS = KeySpace(Company, CompanyKey, "company_id", "company")
USER_KEYS = KeySpace(User, UserKey, "user_id", "user")


def validate_keys(keys: Mapping[str, str], *, required: bool = True) -> None:
    if required and not keys:
        raise ValidationError("keys must contain at least one key", code="missing_keys")
    if len(keys) > MAX_KEYS:
        raise ValidationError(f"at most {MAX_KEYS} keys are allowed", code="too_many_keys")
    for name, value in keys.items():
        if not name or len(name) > MAX_LEN:
            raise ValidationError(
                f"key names must be 1 to {MAX_LEN} characters", code="invalid_key", key=name
            )
        if not isinstance(value, str) or not value or len(value) > MAX_LEN:
            raise ValidationError(
                f"key values must be strings of 1 to {MAX_LEN} characters", code="invalid_key", key=name
            )


def resolve(
    session: Session, space: KeySpace, keys: Mapping[str, str], explicit_id: str | None = None
) -> str | None:
    """The id of the one entity addressed by ``keys`` (and ``explicit_id``), or None.

    Raises NotFoundError when an id is given that does not exist and ConflictError when
    the keys match more than one entity.
    """
    ids: set[str] = set()
    key_id = keys.get(RESERVED_ID_KEY)
    if explicit_id and key_id and explicit_id != key_id:
        raise ConflictError(
            f"id {explicit_id!r} and keys.id {key_id!r} name different {space.what} entities",
            code="key_conflict",
        )
    wanted_id = explicit_id or key_id
    if wanted_id:
        if session.get(space.entity, wanted_id) is None:
            raise NotFoundError(f"{space.what} {wanted_id!r} not found", code=f"{space.what}_not_found")
        ids.add(wanted_id)
    pairs = [(k, v) for k, v in keys.items() if k != RESERVED_ID_KEY]
    if pairs:
        km = space.key_model
        owner = getattr(km, space.owner)
        clause = or_(*[and_(col(km.key) == k, col(km.value) == v) for k, v in pairs])
        ids.update(session.exec(select(owner).where(clause)).all())
    if len(ids) > 1:
        raise ConflictError(
            f"the keys match {len(ids)} different {space.what} entities",
            code="key_conflict",
            matches=sorted(ids),
        )
    return next(iter(ids), None)


def lookup(session: Session, space: KeySpace, keys: Mapping[str, str]) -> Any:
    """The entity addressed by ``keys``; NotFoundError when none."""
    validate_keys(keys)
    entity_id = resolve(session, space, keys)
    if entity_id is None:
        raise NotFoundError(f"no {space.what} matches these keys", code=f"{space.what}_not_found")
    return session.get(space.entity, entity_id)


def key_rows(session: Session, space: KeySpace, entity_id: str) -> list[Any]:
    km = space.key_model
    return list(
        session.exec(select(km).where(getattr(km, space.owner) == entity_id).order_by(col(km.id))).all()
    )


def set_keys(
    session: Session,
    space: KeySpace,
    entity_id: str,
    keys: Mapping[str, str],
    *,
    prevent_remap: bool = False,
) -> bool:
    """Attach keys to an entity (one value per key name). Returns True if anything changed.

    A key name the entity already has with another value is remapped to the new value,
    unless ``prevent_remap`` is set, in which case the existing value is kept.
    """
    existing = {row.key: row for row in key_rows(session, space, entity_id)}
    changed = False
    for name, value in keys.items():
        if name == RESERVED_ID_KEY:
            continue
        row = existing.get(name)
        if row is None:
            session.add(space.key_model(**{space.owner: entity_id, "key": name, "value": value}))
            changed = True
        elif row.value != value and not prevent_remap:
            row.value = value
            session.add(row)
            changed = True
    if changed:
        session.flush()
    return changed


def remove_keys(session: Session, space: KeySpace, entity_id: str, names: Iterable[str]) -> bool:
    drop = set(names)
    changed = False
    for row in key_rows(session, space, entity_id):
        if row.key in drop:
            session.delete(row)
            changed = True
    return changed
