"""Who did what: every service mutation writes one ``AuditLog`` row in its transaction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert
from sqlmodel import Session, SQLModel

from ..models import AuditLog, utcnow


@dataclass(frozen=True, slots=True)
class Actor:
    """The caller of a service: ``actor_type`` is api_key | cli | system | stripe."""

    actor_type: str = "system"
    actor: str | None = None
    name: str | None = None  # a display name (e.g. the API key's name)


SYSTEM = Actor()


def snapshot(row: SQLModel | None) -> dict[str, Any] | None:
    """A JSON-safe copy of a row for the audit log (secrets masked)."""
    if row is None:
        return None
    data: dict[str, Any] = row.model_dump(mode="json")
    if "secret" in data:
        data["secret"] = "***"  # noqa: S105
    return data


def record(
    session: Session,
    actor: Actor,
    action: str,
    entity_type: str,
    entity_id: str | None,
    *,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    note: str | None = None,
) -> None:
    session.exec(
        insert(AuditLog).values(
            actor_type=actor.actor_type,
            actor=actor.actor,
            action=action,
            entity_type=entity_type,
            entity_id=entity_id,
            before=before,
            after=after,
            note=note,
            created_at=utcnow(),
        )
    )
