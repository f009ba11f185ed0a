"""The webhook adapter: change-log batches become outbound webhook deliveries.

``syncd_publish`` writes the batch's deliveries in one transaction (stable ids: a batch
published twice creates nothing twice) and wakes the delivery worker, which
``syncd_startup`` starts in a background thread and ``syncd_shutdown`` stops. The code
lives in ``syncd.webhooks_out``; see it for ordering, retries and signatures.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import structlog
from sqlmodel import Session

from syncd.hookspecs import Change, hookimpl
from syncd.models import utcnow
from syncd.webhooks_out.config import webhook_settings
from syncd.webhooks_out.enqueue import publish
from syncd.webhooks_out.worker import DeliveryWorker

if TYPE_CHECKING:
    from syncd.daemon import Daemon

log = structlog.get_logger(__name__)
# One worker per daemon (a process normally runs one daemon; tests may run several).
_workers: dict[int, DeliveryWorker] = {}


@hookimpl
def syncd_startup(daemon: Daemon) -> None:
    config = webhook_settings(daemon.settings)
    if config.enabled and id(daemon) not in _workers:
        _workers[id(daemon)] = DeliveryWorker(daemon.engine, config).start()


@hookimpl
def syncd_shutdown(daemon: Daemon) -> None:
    worker = _workers.pop(id(daemon), None)
    if worker is not None:
        worker.stop()


@hookimpl
def syncd_publish(daemon: Daemon, changes: Sequence[Change]) -> None:
    with Session(daemon.engine) as session:
        created = publish(session, changes, utcnow())
        session.commit()
    if created:
        log.debug("webhook_deliveries_created", count=created, last_seq=changes[-1].seq)
        worker = _workers.get(id(daemon))
        if worker is not None:
            worker.wake()


@hookimpl
def syncd_resync(daemon: Daemon) -> None:
    """Nothing to rebuild: webhooks are events, not a copy of state (``entitlements.updated``
    carries the full state on every change)."""
