"""Companies, users, their keys, memberships and traits."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from .base import created_field, fk, id_field, ts_field


class Company(SQLModel, table=True):
    __tablename__ = "company"

    id: str = id_field("comp")
    name: str = Field(default="", max_length=255)
    created_at: datetime = created_field()
    updated_at: datetime = created_field()
    last_seen_at: datetime | None = ts_field()


class CompanyKey(SQLModel, table=True):
    """Any key addresses the company; (key, value) is unique across companies."""

    __tablename__ = "company_key"
    __table_args__ = (UniqueConstraint("key", "value"),)

    id: int | None = Field(default=None, primary_key=True)
    company_id: str = fk("company.id")
    key: str = Field(max_length=255)
    value: str = Field(max_length=255)


class User(SQLModel, table=True):
    __tablename__ = "app_user"  # "user" is reserved in Postgres

    id: str = id_field("user")
    name: str = Field(default="", max_length=255)
    created_at: datetime = created_field()
    updated_at: datetime = created_field()
    last_seen_at: datetime | None = ts_field()


class UserKey(SQLModel, table=True):
    __tablename__ = "user_key"
    __table_args__ = (UniqueConstraint("key", "value"),)

    id: int | None = Field(default=None, primary_key=True)
    user_id: str = fk("app_user.id")
    key: str = Field(max_length=255)
    value: str = Field(max_length=255)


class CompanyMembership(SQLModel, table=True):
    __tablename__ = "company_membership"
    __table_args__ = (UniqueConstraint("company_id", "user_id"),)

    id: int | None = Field(default=None, primary_key=True)
    company_id: str = fk("company.id")
    user_id: str = fk("app_user.id")
    created_at: datetime = created_field()


class TraitDefinition(SQLModel, table=True):
    """A typed attribute; ``trait_type`` is boolean|number|string|date (comparable bool|int|string|date)."""

    __tablename__ = "trait_definition"
    __table_args__ = (UniqueConstraint("entity_type", "name"),)

    id: str = id_field("trdf")
    entity_type: str = Field(max_length=16)  # company | user
    name: str = Field(max_length=255)
    trait_type: str = Field(default="string", max_length=16)
    created_at: datetime = created_field()


class CompanyTrait(SQLModel, table=True):
    __tablename__ = "company_trait"
    __table_args__ = (UniqueConstraint("company_id", "trait_definition_id"),)

    id: int | None = Field(default=None, primary_key=True)
    company_id: str = fk("company.id")
    trait_definition_id: str = fk("trait_definition.id")
    value: str = Field(default="", max_length=1024)
    updated_at: datetime = created_field()


class UserTrait(SQLModel, table=True):
    __tablename__ = "user_trait"
    __table_args__ = (UniqueConstraint("user_id", "trait_definition_id"),)

    id: int | None = Field(default=None, primary_key=True)
    user_id: str = fk("app_user.id")
    trait_definition_id: str = fk("trait_definition.id")
    value: str = Field(default="", max_length=1024)
    updated_at: datetime = created_field()
