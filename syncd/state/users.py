"""Users for checks that carry a user context: looked up by key, cached, dropped on change.

Users only matter to flags with user conditions or user-trait conditions, so they are not
preloaded like companies; a user is read from the database the first time its keys are seen
and cached until a ``user.changed`` entry in the change log invalidates it.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

from sqlalchemy import and_, or_
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from ..engine import wire
from ..models import TraitDefinition, UserKey, UserTrait
from .catalog_view import wire_trait

MAX_USERS = 10_000


class KeyConflictError(Exception):
    """The keys given name more than one company (or user)."""


class UserCache:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._lock = threading.Lock()
        self._by_key: dict[tuple[str, str], wire.User] = {}

    def clear(self) -> None:
        with self._lock:
            self._by_key.clear()

    def invalidate(self, user_id: str) -> None:
        with self._lock:
            for pair in [p for p, u in self._by_key.items() if u.id == user_id]:
                del self._by_key[pair]

    def resolve(self, keys: Mapping[str, str]) -> wire.User | None:
        # By id: wire.User is a mutable dataclass, so it cannot go in a set.
        cached = [self._by_key.get((k, v)) for k, v in keys.items()]
        found = {u.id: u for u in cached if u is not None}
        if len(found) == 1 and len(keys) == 1:
            return next(iter(found.values()))
        user = self._load(keys)
        if user is not None:
            with self._lock:
                if len(self._by_key) >= MAX_USERS:
                    self._by_key.clear()
                for pair in user.keys.items():
                    self._by_key[pair] = user
        ids = set(found) | ({user.id} if user else set())
        if len(ids) > 1:
            raise KeyConflictError("the user keys given belong to different users")
        return user

    def _load(self, keys: Mapping[str, str]) -> wire.User | None:
        match = or_(*(and_(col(UserKey.key) == k, col(UserKey.value) == v) for k, v in keys.items()))
        with Session(self._engine) as session:
            owners = set(session.exec(select(UserKey.user_id).where(match)).all())
            if len(owners) > 1:
                raise KeyConflictError("the user keys given belong to different users")
            if not owners:
                return None
            user_id = owners.pop()
            all_keys = session.exec(select(UserKey).where(col(UserKey.user_id) == user_id)).all()
            traits = session.exec(
                select(UserTrait, TraitDefinition)
                .join(TraitDefinition, col(TraitDefinition.id) == col(UserTrait.trait_definition_id))
                .where(col(UserTrait.user_id) == user_id)
            ).all()
            return wire.User(
                id=user_id,
                keys={k.key: k.value for k in all_keys},
                traits=[wire.Trait(t.value, wire_trait(d)) for t, d in traits],
            )
