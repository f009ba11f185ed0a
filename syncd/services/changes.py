"""The one seam between domain mutations and the entitlement engine.

Every service that can change what a company is entitled to calls
:func:`entitlements_changed` inside its transaction. For now the ids are only recorded on
the session (``session.info``); whoever owns the transaction reads them with
:func:`take_entitlement_changes` *after* a successful commit and hands them to the engine
(the HTTP API calls ``app.state.entitlements_listeners``). A rolled-back session's record
must be discarded with the session.

``"all"`` means "recompute every company" (a flag's rules or default changed, a feature
was deleted, ...). Once ``"all"`` is recorded, later ids are absorbed by it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, TypeAlias

from sqlmodel import Session

ALL: Literal["all"] = "all"
Changed: TypeAlias = frozenset[str] | Literal["all"]

_KEY = "syncd.entitlements_changed"


def entitlements_changed(session: Session, company_ids: Iterable[str] | Literal["all"]) -> None:
    """Record that these companies' entitlements (or every company's) may have changed."""
    current = session.info.get(_KEY)
    if current == ALL:
        return
    if company_ids == ALL:
        session.info[_KEY] = ALL
        return
    ids: set[str] = current if isinstance(current, set) else set()
    ids.update(company_ids)
    session.info[_KEY] = ids


def peek_entitlement_changes(session: Session) -> Changed | None:
    """What has been recorded so far (``None``: nothing)."""
    current = session.info.get(_KEY)
    if current == ALL:
        return ALL
    if isinstance(current, set) and current:
        return frozenset(current)
    return None


def take_entitlement_changes(session: Session) -> Changed | None:
    """Return and clear the record; call after commit."""
    changed = peek_entitlement_changes(session)
    session.info.pop(_KEY, None)
    return changed
