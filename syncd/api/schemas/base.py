"""Base classes and helpers for request models."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from ...exceptions import ValidationError
from ...services.common import DEFAULT_LIMIT, MAX_LIMIT, MAX_OFFSET, Page


class Body(BaseModel):
    """A JSON request body: strict types (no ``"1"`` for 1), unknown fields ignored."""

    model_config = ConfigDict(strict=True, extra="ignore")
    UNSUPPORTED: ClassVar[tuple[str, ...]] = ()


class Query(BaseModel):
    """A query string: lenient types (query values are strings), unknown parameters ignored."""

    model_config = ConfigDict(extra="ignore")
    UNSUPPORTED: ClassVar[tuple[str, ...]] = ()


class ListQuery(Query):
    # Bounds are checked by Page (invalid_limit / invalid_offset); here only documented.
    limit: int = Field(default=DEFAULT_LIMIT, json_schema_extra={"minimum": 1, "maximum": MAX_LIMIT})
    offset: int = Field(default=0, json_schema_extra={"minimum": 0, "maximum": MAX_OFFSET})

    def page(self) -> Page:
        return Page(limit=self.limit, offset=self.offset)


def reject_unsupported(model: Body | Query) -> None:
    """400 for fields syncd accepts in the schema but does not implement (``UNSUPPORTED``), when set."""
    given = [n for n in model.UNSUPPORTED if getattr(model, n, None) not in (None, False, [], {})]
    if given:
        raise ValidationError(
            f"syncd does not support {', '.join(given)}", code="unsupported_parameter", parameters=given
        )


def merge(single: str | None, many: list[str] | None) -> list[str] | None:
    """Schematic filters come as ``x_id`` and ``x_ids``; None means no filter."""
    if single is None and not many:
        return None
    return [*(many or []), *([single] if single is not None else [])]
