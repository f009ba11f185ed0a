"""API keys: created once (shown once), stored as SHA-256 digests, checked in constant time.

Kinds, from most to least powerful: ``secret`` (everything), ``readonly`` (reads and flag
checks), ``publishable`` (flag checks, identify and track only; safe in a browser).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from .exceptions import ValidationError
from .models import ApiKey, utcnow

KINDS = ("secret", "publishable", "readonly")
_PREFIX = {"secret": "sch_dev_", "publishable": "sch_pub_", "readonly": "sch_ro_"}


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key's id, name and kind."""

    key_id: str
    name: str
    kind: str


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(session: Session, kind: str, name: str = "") -> tuple[ApiKey, str]:
    """Create a key; returns the row and the plaintext, which is never stored."""
    if kind not in KINDS:
        raise ValidationError(
            f"unknown key kind {kind!r}; use one of {', '.join(KINDS)}", code="invalid_kind"
        )
    plaintext = _PREFIX[kind] + secrets.token_urlsafe(24).replace("-", "x").replace("_", "y")
    row = ApiKey(name=name, kind=kind, key_hash=digest(plaintext), hint=f"{plaintext[:8]}...{plaintext[-4:]}")
    session.add(row)
    session.flush()
    return row, plaintext


class KeyVerifier:
    """Resolves a presented key to a Principal; caches hits so the hot path avoids the database."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._cache: dict[str, Principal | None] = {}

    def cached(self, presented: str) -> Principal | None:
        """A key verified before, without touching the database (safe on the event loop)."""
        return self._cache.get(digest(presented))

    def verify(self, presented: str | None) -> Principal | None:
        if not presented:
            return None
        wanted = digest(presented)
        if wanted in self._cache:
            return self._cache[wanted]
        with Session(self._engine) as session:
            row = session.exec(select(ApiKey).where(ApiKey.key_hash == wanted)).first()
            principal = None
            # The lookup is by digest; compare again in constant time so no early-exit
            # comparison of attacker-controlled input ever runs.
            if row is not None and row.revoked_at is None and hmac.compare_digest(row.key_hash, wanted):
                principal = Principal(key_id=row.id, name=row.name, kind=row.kind)
        if principal is not None:
            self._cache[wanted] = principal
        return principal

    def forget(self) -> None:
        """Drop cached keys (after a revocation)."""
        self._cache.clear()


def revoke_key(session: Session, key_id: str, when: datetime | None = None) -> bool:
    row = session.get(ApiKey, key_id)
    if row is None or row.revoked_at is not None:
        return False
    row.revoked_at = when or utcnow()
    session.add(row)
    return True
