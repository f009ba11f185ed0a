"""Where the Redis adapter's data comes from: the database, through ``syncd.state``.

``StateSource`` is the narrow interface the adapter needs, so tests (and the benchmark) can
hand it wire objects directly.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Protocol

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from syncd.engine import wire
from syncd.models import Company, TraitDefinition, User, UserKey, UserTrait
from syncd.state.catalog_view import CatalogView, load_catalog_view, wire_trait
from syncd.state.loader import LoadedCompany, load_companies

PAGE = 500  # entities loaded and written per round trip during full writes
VIEW_MAX_AGE_S = 60.0  # the catalog view is reloaded on catalog changes, and at least this often


class StateSource(Protocol):
    def flags(self) -> list[wire.Flag]: ...

    def companies(self, ids: Sequence[str]) -> dict[str, wire.Company]: ...

    def company_pages(self) -> Iterator[list[wire.Company]]: ...

    def users(self, ids: Sequence[str]) -> dict[str, wire.User]: ...

    def user_pages(self) -> Iterator[list[wire.User]]: ...

    def catalog_changed(self) -> None:
        """Plans, entitlements or flags changed: forget any cached catalog."""

    def next_boundary(self, company_id: str) -> float | None:
        """When the company's state, as last loaded, stops being valid (epoch seconds), if ever."""


class DatabaseSource:
    """Current state read from the database at call time.

    The catalog view (flags with compiled plan rules, plan specs, traits) is shared by every
    company load and reloaded on ``catalog_changed`` or when older than a minute; companies
    are always read fresh. Loads remember each company's next time boundary (trial end,
    override expiry, credit grant expiry...) for the adapter's boundary timer.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # Reads only, each statement its own snapshot as under READ COMMITTED anyway: without
        # a transaction there are no BEGIN and ROLLBACK round trips (each publish loads).
        self._reads = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._lock = threading.Lock()
        self._view: tuple[float, CatalogView] | None = None
        self._boundaries: dict[str, float] = {}

    @staticmethod
    def _now() -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    def _catalog(self, session: Session, now: dt.datetime) -> CatalogView:
        with self._lock:
            if self._view is None or time.monotonic() - self._view[0] > VIEW_MAX_AGE_S:
                self._view = (time.monotonic(), load_catalog_view(session, now))
            return self._view[1]

    def catalog_changed(self) -> None:
        with self._lock:
            self._view = None

    def next_boundary(self, company_id: str) -> float | None:
        return self._boundaries.get(company_id)

    def flags(self) -> list[wire.Flag]:
        self.catalog_changed()  # flags are read when the catalog changed: read it fresh
        with Session(self._reads) as session:
            return list(self._catalog(session, self._now()).flags)

    def companies(self, ids: Sequence[str]) -> dict[str, wire.Company]:
        now = self._now()
        with Session(self._reads) as session:
            loaded = load_companies(session, self._catalog(session, now), list(ids), now)
        for cid in ids:
            self._remember(cid, loaded.get(cid), now)
        return {cid: item.company for cid, item in loaded.items()}

    def _remember(self, company_id: str, item: LoadedCompany | None, now: dt.datetime) -> None:
        upcoming = [b.timestamp() for b in item.boundaries if b > now] if item is not None else []
        if upcoming:
            self._boundaries[company_id] = min(upcoming)
        else:
            self._boundaries.pop(company_id, None)

    def company_pages(self) -> Iterator[list[wire.Company]]:
        for ids in self._id_pages(Company):
            loaded = self.companies(ids)
            yield [loaded[i] for i in ids if i in loaded]

    def users(self, ids: Sequence[str]) -> dict[str, wire.User]:
        if not ids:
            return {}
        with Session(self._reads) as session:
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
            with Session(self._reads) as session:
                ids = list(
                    session.exec(
                        select(model.id).where(col(model.id) > after).order_by(col(model.id)).limit(PAGE)
                    ).all()
                )
            if not ids:
                return
            yield ids
            after = ids[-1]
