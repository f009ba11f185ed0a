"""The webhook adapter: change-log batches become outbound webhook deliveries.

Enabled by ``[plugins.webhook] enabled = true``; options in the same section (see
``syncd.webhooks_out.config``). ``syncd_publish`` writes a batch's deliveries in one
transaction (stable ids: a batch published twice creates nothing twice) and wakes the
delivery worker, which ``syncd_startup`` starts in a background thread and
``syncd_shutdown`` stops. The code lives in ``syncd.webhooks_out``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import structlog
from sqlmodel import Session

from syncd.config import Settings
from syncd.hookspecs import Change, hookimpl
from syncd.models import utcnow
from syncd.webhooks_out.config import WebhookSettings, parse
from syncd.webhooks_out.enqueue import publish
from syncd.webhooks_out.worker import DeliveryWorker

if TYPE_CHECKING:
    from syncd.daemon import Daemon

log = structlog.get_logger(__name__)


class WebhookAdapter:
    """One per daemon: its settings and its delivery worker."""

    def __init__(self, config: WebhookSettings) -> None:
        self.config = config
        self.worker: DeliveryWorker | None = None

    @hookimpl
    def syncd_startup(self, daemon: Daemon) -> None:
        if self.config.deliver and self.worker is None:
            # Leader only, like the publish pump (on SQLite the one daemon always leads).
            leadership = daemon.leadership
            self.worker = DeliveryWorker(daemon.engine, self.config, lambda: leadership.is_leader).start()

    @hookimpl
    def syncd_shutdown(self, daemon: Daemon) -> None:
        worker, self.worker = self.worker, None
        if worker is not None:
            worker.stop()

    @hookimpl
    def syncd_publish(self, daemon: Daemon, changes: Sequence[Change]) -> None:
        with Session(daemon.engine) as session:
            created = publish(session, changes, utcnow())
            session.commit()
        if created:
            log.debug("webhook_deliveries_created", count=created, last_seq=changes[-1].seq)
            if self.worker is not None:
                self.worker.wake()

    @hookimpl
    def syncd_resync(self, daemon: Daemon) -> None:
        """Nothing to rebuild: webhooks are events, not a copy of state (``entitlements.updated``
        carries the full state with every change)."""


def make_plugin(config: Mapping[str, Any], settings: Settings) -> WebhookAdapter:
    """Called by the plugin manager with ``[plugins.webhook]``; bad settings fail the start."""
    return WebhookAdapter(parse(config))
