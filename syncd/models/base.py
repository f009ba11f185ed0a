"""Shared model plumbing: naming convention, ids, timestamps, column types."""

from __future__ import annotations

import os
import string
import threading
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import JSON, BigInteger, DateTime, Integer, TypeDecorator
from sqlalchemy.engine import Dialect
from sqlmodel import Field, SQLModel

# Named constraints make migrations deterministic and SQLite batch ALTERs possible.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

_ALPHABET = string.ascii_letters + string.digits
# Random bytes -> base62 in C: bytes below 248 (= 4 x 62) map to a character each, uniformly;
# the 8 above are dropped (bytes.translate's delete), so no character is more likely.
_TO_BASE62 = bytes(ord(_ALPHABET[b % 62]) for b in range(256))
_OVER = bytes(range(248, 256))
_ID_CHARS = 22
_DRAW = 4096  # random bytes a refill: ~180 ids


class _RandomChars(threading.local):
    """Base62 characters from ``os.urandom``, drawn 4 KB at a time per thread: a backfill
    creates tens of thousands of ids a second, and one ``getrandom`` call each was ~7% of its
    CPU. Dropped in a forked child, which would otherwise hand out its parent's next ids."""

    chars: bytes = b""
    at: int = 0

    def take(self) -> str:
        while self.at + _ID_CHARS > len(self.chars):  # a 4 KB draw keeps ~3,970 characters
            self.chars, self.at = os.urandom(_DRAW).translate(_TO_BASE62, _OVER), 0
        start = self.at
        self.at = start + _ID_CHARS
        return self.chars[start : self.at].decode()


_random = _RandomChars()


def _forget_random_chars() -> None:
    global _random
    _random = _RandomChars()


os.register_at_fork(after_in_child=_forget_random_chars)


def new_id(prefix: str) -> str:
    """A Schematic-style id: ``<prefix>_`` plus 22 random base62 characters (~131 bits)."""
    return f"{prefix}_{_random.take()}"


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime stored; use aware UTC datetimes")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# BIGINT on Postgres; INTEGER on SQLite, where only "INTEGER PRIMARY KEY" auto-increments.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")


def bigint_pk() -> Any:
    return Field(default=None, primary_key=True, sa_type=BigIntPK)


def id_field(prefix: str) -> Any:
    return Field(default_factory=lambda: new_id(prefix), primary_key=True, max_length=40)


def generated_id_field(prefix: str) -> Any:
    """A generated, stable id that is not the primary key (e.g. compiled rule ids)."""
    return Field(default_factory=lambda: new_id(prefix), max_length=40, nullable=False)


def created_field() -> Any:
    return Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


def ts_field(*, index: bool = False) -> Any:
    return Field(default=None, sa_type=UTCDateTime, nullable=True, index=index)


def json_field(default_factory: Any = dict) -> Any:
    return Field(default_factory=default_factory, sa_type=JSON, nullable=False)


OnDelete = Literal["CASCADE", "SET NULL", "RESTRICT"]


def fk(target: str, *, index: bool = True, nullable: bool = False, ondelete: OnDelete = "CASCADE") -> Any:
    return Field(
        default=None if nullable else ...,
        foreign_key=target,
        index=index,
        nullable=nullable,
        ondelete=ondelete,
        max_length=40,
    )
