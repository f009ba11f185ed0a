"""Typed traits on companies and users, with definitions auto-created on first use.

A definition's ``trait_type`` (boolean | number | string | date) is inferred from the first
value seen; later values must convert to it. Values are stored as strings.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from ..exceptions import ValidationError
from ..models import CompanyTrait, TraitDefinition, UserTrait, utcnow

TRAIT_TYPES = ("boolean", "number", "string", "date")
ENTITY_TYPES = ("company", "user")
MAX_VALUE_LEN = 1024
MAX_NAME_LEN = 255
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$")


def infer_trait_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str) and _is_date(value):
        return "date"
    return "string"


def _is_date(value: str) -> bool:
    if not _DATE.match(value):
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _number(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return None if not math.isfinite(value) else (str(int(value)) if value.is_integer() else repr(value))
    if isinstance(value, str):
        try:
            return _number(int(value))
        except ValueError:
            try:
                return _number(float(value))
            except ValueError:
                return None
    return None


def encode_value(name: str, value: Any, trait_type: str) -> str:
    """The stored string for ``value`` under a ``trait_type`` definition; ValidationError if impossible."""
    encoded: str | None
    if trait_type == "number":
        encoded = _number(value)
    elif trait_type == "boolean":
        if isinstance(value, bool):
            encoded = "true" if value else "false"
        elif isinstance(value, str) and value.lower() in ("true", "false"):
            encoded = value.lower()
        else:
            encoded = None
    elif trait_type == "date":
        encoded = value if isinstance(value, str) and _is_date(value) else None
    elif isinstance(value, bool):
        encoded = "true" if value else "false"
    elif isinstance(value, str):
        encoded = value
    elif isinstance(value, int | float):
        encoded = _number(value) or str(value)
    else:
        encoded = json.dumps(value, sort_keys=True, separators=(",", ":"))
    if encoded is None:
        raise ValidationError(
            f"trait {name!r} is a {trait_type} trait; {value!r} is not a {trait_type}",
            code="invalid_trait_value",
            trait=name,
        )
    if len(encoded) > MAX_VALUE_LEN:
        raise ValidationError(
            f"trait {name!r} value is longer than {MAX_VALUE_LEN} characters", code="invalid_trait_value"
        )
    return encoded


def decode_value(stored: str, trait_type: str) -> Any:
    """The JSON value of a stored trait (numbers and booleans typed, the rest strings)."""
    if trait_type == "number":
        try:
            return int(stored)
        except ValueError:
            try:
                return float(stored)
            except ValueError:
                return stored
    if trait_type == "boolean":
        return stored == "true"
    return stored


def get_or_create_definition(session: Session, entity_type: str, name: str, sample: Any) -> TraitDefinition:
    if not name or len(name) > MAX_NAME_LEN:
        raise ValidationError(f"trait names must be 1 to {MAX_NAME_LEN} characters", code="invalid_trait")
    found = session.exec(
        select(TraitDefinition).where(
            col(TraitDefinition.entity_type) == entity_type, col(TraitDefinition.name) == name
        )
    ).first()
    if found is not None:
        return found
    definition = TraitDefinition(entity_type=entity_type, name=name, trait_type=infer_trait_type(sample))
    session.add(definition)
    session.flush()
    return definition


def _trait_model(entity_type: str) -> tuple[Any, str]:
    return (CompanyTrait, "company_id") if entity_type == "company" else (UserTrait, "user_id")


def trait_rows(session: Session, entity_type: str, entity_id: str) -> list[tuple[Any, TraitDefinition]]:
    model, owner = _trait_model(entity_type)
    query = (
        select(model, TraitDefinition)
        .join(TraitDefinition, col(TraitDefinition.id) == model.trait_definition_id)
        .where(getattr(model, owner) == entity_id)
        .order_by(col(TraitDefinition.name))
    )
    return [(row, definition) for row, definition in session.exec(query).all()]


def _current(session: Session, entity_type: str, entity_id: str, definition_id: str) -> Any:
    model, owner = _trait_model(entity_type)
    return session.exec(
        select(model).where(getattr(model, owner) == entity_id, model.trait_definition_id == definition_id)
    ).first()


def set_traits(session: Session, entity_type: str, entity_id: str, traits: Mapping[str, Any]) -> bool:
    """Set trait values (``None`` removes the value). Returns True if anything changed."""
    model, owner = _trait_model(entity_type)
    changed = False
    for name, value in traits.items():
        if value is None:
            found = session.exec(
                select(TraitDefinition).where(
                    col(TraitDefinition.entity_type) == entity_type, col(TraitDefinition.name) == name
                )
            ).first()
            row = _current(session, entity_type, entity_id, found.id) if found else None
            if row is not None:
                session.delete(row)
                changed = True
            continue
        definition = get_or_create_definition(session, entity_type, name, value)
        encoded = encode_value(name, value, definition.trait_type)
        row = _current(session, entity_type, entity_id, definition.id)
        if row is None:
            session.add(model(**{owner: entity_id, "trait_definition_id": definition.id, "value": encoded}))
            changed = True
        elif row.value != encoded:
            row.value, row.updated_at = encoded, utcnow()
            session.add(row)
            changed = True
    if changed:
        session.flush()
    return changed


def increment_trait(session: Session, entity_type: str, entity_id: str, name: str, by: int) -> None:
    """Add ``by`` to a number trait (a missing value counts as 0)."""
    definition = get_or_create_definition(session, entity_type, name, by)
    if definition.trait_type != "number":
        raise ValidationError(
            f"trait {name!r} is a {definition.trait_type} trait and cannot be incremented",
            code="invalid_trait_value",
        )
    row = _current(session, entity_type, entity_id, definition.id)
    current = decode_value(row.value, "number") if row is not None else 0
    if not isinstance(current, int | float):
        current = 0
    set_traits(session, entity_type, entity_id, {name: current + by})
