"""A thread that LISTENs on a Postgres channel and calls back on each notification.

Used where one process must react promptly to commits made by another: the Stripe inbox
applier woken by other workers' intake, the publish pump woken by change-log writes of the
applier process and of other replicas. Notifications are wake-ups, never data: a missed one
(the connection dropped, the database restarted) only delays the work until the caller's own
periodic pass, and ``on_notify`` is also called after each (re)connection, for whatever was
committed while nobody listened.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import LiteralString

import psycopg
import structlog
from sqlalchemy.engine import Engine

log = structlog.get_logger(__name__)

POLL_S = 0.5  # how often a quiet listener checks whether it should stop
RECONNECT_S = 1.0


class Listener:
    """``listen_sql`` is a static ``LISTEN <channel>`` statement; ``keep_going`` lets the owner
    end the thread without holding a reference to it (checked between notifications)."""

    def __init__(
        self,
        engine: Engine,
        listen_sql: LiteralString,
        on_notify: Callable[[], None],
        *,
        name: str,
        keep_going: Callable[[], bool] = lambda: True,
    ) -> None:
        self._url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._sql = listen_sql
        self._on_notify = on_notify
        self._keep_going = keep_going
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Listener:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stopped.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return not self._stopped.is_set() and self._keep_going()

    def _run(self) -> None:
        while self.running:
            try:
                with psycopg.connect(self._url, autocommit=True) as conn:
                    conn.execute(self._sql)
                    self._on_notify()
                    while self.running:
                        if any(True for _ in conn.notifies(timeout=POLL_S, stop_after=1)):
                            self._on_notify()
            except Exception:  # the owner's periodic pass covers the gap; listen again shortly
                log.warning("pg_listen_failed", statement=self._sql, exc_info=True)
                self._stopped.wait(RECONNECT_S)
