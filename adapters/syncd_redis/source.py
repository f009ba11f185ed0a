"""Where the Redis adapter's data comes from: the database, through ``syncd.state``.

``StateSource`` is the narrow interface the adapter needs, so tests (and the benchmark) can
hand it wire objects directly.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from typing import Protocol

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from syncd import state
from syncd.engine import wire
from syncd.models import Company, TraitDefinition, User, UserKey, UserTrait
from syncd.state.catalog_view import load_catalog_view, wire_trait
from syncd.state.loader import load_companies

PAGE = 500  # entities loaded and written per round trip during full writes


class StateSource(Protocol):
    def flags(self) -> list[wire.Flag]: ...

    def companies(self, ids: Sequence[str]) -> dict[str, wire.Company]: ...

    def company_pages(self) -> Iterator[list[wire.Company]]: ...

    def users(self, ids: Sequence[str]) -> dict[str, wire.User]: ...

    def user_pages(self) -> Iterator[list[wire.User]]: ...


class DatabaseSource:
    """Current state read from the database at call time (each call is one snapshot)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @staticmethod
    def _now() -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    def flags(self) -> list[wire.Flag]:
        with Session(self.engine) as session:
            return state.load_flags(session, self._now())

    def companies(self, ids: Sequence[str]) -> dict[str, wire.Company]:
        with Session(self.engine) as session:
            return state.load_companies(session, list(ids), self._now())

    def company_pages(self) -> Iterator[list[wire.Company]]:
        now = self._now()
        with Session(self.engine) as session:
            view = load_catalog_view(session, now)  # once per pass, not per page
        for ids in self._id_pages(Company):
            with Session(self.engine) as session:
                loaded = load_companies(session, view, ids, now)
            yield [loaded[i].company for i in ids if i in loaded]

    def users(self, ids: Sequence[str]) -> dict[str, wire.User]:
        if not ids:
            return {}
        with Session(self.engine) as session:
            found = session.exec(select(User.id).where(col(User.id).in_(ids))).all()
            users = {uid: wire.User(id=uid) for uid in found}
            for key in session.exec(select(UserKey).where(col(UserKey.user_id).in_(found))).all():
                users[key.user_id].keys[key.key] = key.value
            traits = session.exec(
                select(UserTrait, TraitDefinition)
                .join(TraitDefinition, col(TraitDefinition.id) == col(UserTrait.trait_definition_id))
                .where(col(UserTrait.user_id).in_(found))
            ).all()
            for trait, definition in traits:
                users[trait.user_id].traits.append(wire.Trait(trait.value, wire_trait(definition)))
        return users

    def user_pages(self) -> Iterator[list[wire.User]]:
        for ids in self._id_pages(User):
            loaded = self.users(ids)
            yield [loaded[i] for i in ids if i in loaded]

    def _id_pages(self, model: type[Company] | type[User]) -> Iterator[list[str]]:
        """Ids in pages by keyset, so a long resync never holds one huge result."""
        after = ""
        while True:
            with Session(self.engine) as session:
                ids = list(
                    session.exec(
                        select(model.id).where(col(model.id) > after).order_by(col(model.id)).limit(PAGE)
                    ).all()
                )
            if not ids:
                return
            yield ids
            after = ids[-1]
