"""Helpers shared by the services: lookups that raise, pagination, text search, enums."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, or_
from sqlalchemy.sql.elements import ColumnElement as _CE
from sqlmodel import Session, SQLModel, col, select
from sqlmodel.sql.expression import SelectOfScalar

from ..exceptions import NotFoundError, ValidationError

T = TypeVar("T", bound=SQLModel)

DEFAULT_LIMIT = 100
MAX_LIMIT = 250
MAX_OFFSET = 2**31 - 1  # larger offsets overflow the database's integer binding


@dataclass(frozen=True, slots=True)
class Page:
    """``limit``/``offset`` pagination (Schematic: default 100, at most 250)."""

    limit: int = DEFAULT_LIMIT
    offset: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_LIMIT:
            raise ValidationError(
                f"limit must be between 1 and {MAX_LIMIT}", code="invalid_limit", limit=self.limit
            )
        if not 0 <= self.offset <= MAX_OFFSET:
            raise ValidationError(
                f"offset must be between 0 and {MAX_OFFSET}", code="invalid_offset", offset=self.offset
            )

    def apply(self, query: SelectOfScalar[T]) -> SelectOfScalar[T]:
        return query.limit(self.limit).offset(self.offset)


FIRST_PAGE = Page()


MAX_NAME = 255


def check_name(name: str | None) -> None:
    """Names of companies and users are at most MAX_NAME characters."""
    if name is not None and len(name) > MAX_NAME:
        raise ValidationError(f"name must be at most {MAX_NAME} characters", code="invalid_name")


def require(session: Session, model: type[T], entity_id: str, what: str) -> T:
    """The row with this primary key, or NotFoundError naming the entity."""
    row = session.get(model, entity_id) if entity_id else None
    if row is None:
        raise NotFoundError(f"{what} {entity_id!r} not found", code=f"{what.replace(' ', '_')}_not_found")
    return row


def require_all(session: Session, model: type[T], ids: Collection[str], what: str) -> list[T]:
    """Rows for all ids (in the order given, duplicates dropped), or NotFoundError for the first missing."""
    wanted = list(dict.fromkeys(ids))
    if not wanted:
        return []
    pk: Any = model.__table__.primary_key.columns.values()[0]  # type: ignore[attr-defined]
    rows = {getattr(r, pk.name): r for r in session.exec(select(model).where(pk.in_(wanted))).all()}
    for entity_id in wanted:
        if entity_id not in rows:
            raise NotFoundError(f"{what} {entity_id!r} not found", code=f"{what.replace(' ', '_')}_not_found")
    return [rows[i] for i in wanted]


def check_choice(value: str | None, allowed: Sequence[str], field: str) -> None:
    if value is not None and value not in allowed:
        raise ValidationError(
            f"{field} must be one of {', '.join(allowed)}", code="invalid_value", field=field, value=value
        )


def text_match(query: str, *columns: Any) -> ColumnElement[bool]:
    """Case-insensitive substring match on any of the columns (LIKE wildcards escaped)."""
    escaped = query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    pattern = f"%{escaped}%"
    clauses: list[_CE[bool]] = [col(c).ilike(pattern, escape="\\") for c in columns]
    return or_(*clauses)


def merge_ids(single: str | None, many: Sequence[str] | None) -> list[str] | None:
    """Schematic filters come as ``x_id`` and ``x_ids``; None means "no filter"."""
    if single is None and not many:
        return None
    out = list(many or [])
    if single is not None:
        out.append(single)
    return out
