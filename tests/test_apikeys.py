"""API keys are shown once, stored hashed, and resolve to their kind."""

from __future__ import annotations

import pytest
from sqlmodel import Session, select

from syncd import migrate
from syncd.apikeys import KeyVerifier, create_key, digest, revoke_key
from syncd.db import make_engine, session_scope
from syncd.exceptions import ValidationError
from syncd.models import ApiKey


def test_keys_are_hashed_and_verified(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    migrate.upgrade(engine)
    with session_scope(engine) as session:
        row, plaintext = create_key(session, "publishable", "web")
    with Session(engine) as session:
        stored = session.exec(select(ApiKey)).one()
    assert plaintext not in (stored.key_hash, stored.hint)
    assert stored.key_hash == digest(plaintext)
    verifier = KeyVerifier(engine)
    principal = verifier.verify(plaintext)
    assert principal is not None and principal.kind == "publishable" and principal.key_id == row.id
    assert verifier.verify(plaintext + "x") is None
    assert verifier.verify("") is None


def test_revoked_keys_stop_working(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    migrate.upgrade(engine)
    with session_scope(engine) as session:
        row, plaintext = create_key(session, "secret")
    with session_scope(engine) as session:
        assert revoke_key(session, row.id)
    assert KeyVerifier(engine).verify(plaintext) is None


def test_unknown_kind_is_rejected(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    migrate.upgrade(engine)
    with session_scope(engine) as session, pytest.raises(ValidationError):
        create_key(session, "admin")
