"""The delivery worker: rounds of claim/send/record in a background thread.

Rounds run only while ``active()`` says so (the adapter passes "this replica leads", like
the publish pump); claims make concurrent workers safe anyway (``claim.py``). Between empty
rounds it sleeps ``poll_interval_s`` unless :meth:`DeliveryWorker.wake` is called (the
publish hook does, so new deliveries go out at once).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import structlog
from sqlalchemy import Engine

from .config import WebhookSettings
from .delivery import Sender, deliver_round

log = structlog.get_logger(__name__)


class DeliveryWorker:
    def __init__(
        self, engine: Engine, config: WebhookSettings, active: Callable[[], bool] = lambda: True
    ) -> None:
        self.engine = engine
        self.config = config
        self.active = active
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.attempts = 0  # attempts made since start (for tests and benchmarks)

    def start(self) -> DeliveryWorker:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="syncd-webhook-delivery", daemon=True)
            self._thread.start()
            log.info("webhook_worker_started")
        return self

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the round in progress, then stop."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
            log.info("webhook_worker_stopped")

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        with Sender(self.config) as sender:
            while not self._stop.is_set():
                self._wake.clear()
                try:
                    made = deliver_round(self.engine, sender) if self.active() else 0
                except Exception:  # a database hiccup: log, wait, try again
                    log.exception("webhook_round_failed")
                    made = 0
                self.attempts += made
                if made == 0:
                    self._wake.wait(self.config.poll_interval_s)
