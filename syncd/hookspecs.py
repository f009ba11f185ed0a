"""The plugin hooks: everything an adapter (first- or third-party) can implement.

Adapters are pluggy plugins loaded from the ``syncd.adapters`` entry-point group and
registered under their entry-point name. Each adapter follows the ``change_log`` with a
durable cursor of its own: ``syncd_publish`` receives the next batch of changes, in order,
and the cursor moves past them only when the call returns. An adapter that raises gets the
same batch again later (with backoff) while every other adapter carries on, so a failing
adapter never blocks another and nothing is lost across restarts.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from .daemon import Daemon

PROJECT = "syncd"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@dataclass(frozen=True, slots=True)
class Change:
    """One ``change_log`` row.

    ``topic`` is ``entitlements.changed`` (``company_id`` None: every company) or a domain
    event such as ``company.plan_changed`` with its ``payload``. ``seq`` is strictly
    increasing in commit order; use it as a stable delivery id.
    """

    seq: int
    topic: str
    company_id: str | None
    created_at: dt.datetime
    payload: dict[str, Any] = field(default_factory=dict)


@hookspec
def syncd_startup(daemon: Daemon) -> None:
    """The daemon has connected, migrated and loaded its state; open connections here."""


@hookspec
def syncd_shutdown(daemon: Daemon) -> None:
    """The daemon is stopping; close what ``syncd_startup`` opened."""


@hookspec
def syncd_publish(daemon: Daemon, changes: Sequence[Change]) -> None:
    """Publish a batch of changes, in order. Raise to have the same batch retried later."""


@hookspec
def syncd_resync(daemon: Daemon) -> None:
    """Rebuild the adapter's whole target from current state (start-up, or on demand)."""
