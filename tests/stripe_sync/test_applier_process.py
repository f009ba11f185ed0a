"""The applier in a process of its own: woken by the intake's NOTIFY, restarted after a
crash, stopped with its daemon; and the configuration that selects it."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from syncd.config import Settings, load_settings
from syncd.daemon import Daemon
from syncd.exceptions import ConfigError
from syncd.stripe_sync.applier_process import (
    HEALTHY_AFTER_S,
    RESTART_DELAY_MAX_S,
    RESTART_DELAY_MIN_S,
    ApplierProcess,
    restart_delay,
    uses_process,
)
from syncd.stripe_sync.inbox import parse_event, store_event
from syncd.stripe_sync.intake import NOTIFY
from syncd.stripe_sync.runtime import applies_elsewhere

from .test_webhook_endpoint import SECRET
from .test_webhook_endpoint import event as event_body


def settings_for(database_url: str, tmp_path: Path, **extra: str) -> Settings:
    environ = {
        "SYNCD_DATA_DIR": str(tmp_path),
        "SYNCD_DATABASE_URL": database_url,
        "SYNCD_CATALOG_PATH": "",
        "SYNCD_STRIPE_WEBHOOK_SECRET": SECRET,
        "SYNCD_STRIPE_REFETCH": "",
        "SYNCD_LOG_LEVEL": "warning",
        **extra,
    }
    return load_settings(None, environ=environ)


@pytest.fixture
def pg_daemon(postgres_url: str, tmp_path: Path) -> Iterator[Daemon]:
    daemon = Daemon(settings_for(postgres_url, tmp_path))
    daemon.prepare(instance_lock=False)
    yield daemon
    daemon.stop_applier()
    daemon.close()


def store_and_notify(daemon: Daemon, event_id: str) -> None:
    """What the intake's group commit does: the row and the NOTIFY in one transaction."""
    raw = event_body(event_id, "customer.created")
    with daemon.engine.begin() as conn:
        store_event(conn, raw, parse_event(raw))
        conn.execute(NOTIFY)


def wait_applied(daemon: Daemon, event_id: str, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        with daemon.engine.connect() as conn:
            status = conn.execute(
                text("SELECT status FROM inbox_event WHERE event_id = :e"), {"e": event_id}
            ).scalar_one()
        if status != "pending" or time.monotonic() > deadline:
            return str(status)
        time.sleep(0.05)


@pytest.mark.postgres
def test_notified_events_are_applied_by_the_child_which_survives_a_crash(pg_daemon: Daemon) -> None:
    pg_daemon.start_applier()
    applier = pg_daemon.applier
    assert isinstance(applier, ApplierProcess) and applier.wait_ready(60)
    assert applies_elsewhere(pg_daemon)  # the intake now NOTIFYs instead of kicking a thread
    first = applier.pid
    assert first is not None and first != os.getpid()

    store_and_notify(pg_daemon, "evt_child_1")
    assert wait_applied(pg_daemon, "evt_child_1", timeout=5.0) == "applied"

    os.kill(first, signal.SIGKILL)  # a crash: the watchdog starts another
    deadline = time.monotonic() + 60
    while (applier.pid in (None, first) or not applier.wait_ready(0.1)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert applier.pid not in (None, first)
    store_and_notify(pg_daemon, "evt_child_2")
    assert wait_applied(pg_daemon, "evt_child_2") == "applied"

    second = applier.pid
    pg_daemon.stop_applier()  # SIGTERM: the child exits between passes
    assert pg_daemon.applier is None and not applies_elsewhere(pg_daemon)
    assert second is not None
    with pytest.raises(ProcessLookupError):
        os.kill(second, 0)


@pytest.mark.postgres
def test_an_event_stored_without_a_notification_is_applied_within_a_pass(pg_daemon: Daemon) -> None:
    """A missed NOTIFY (the Events API replay, a listener reconnecting) costs at most the
    child's periodic pass."""
    pg_daemon.start_applier()
    assert pg_daemon.applier is not None and pg_daemon.applier.wait_ready(60)
    raw = event_body("evt_unnotified", "customer.created")
    with pg_daemon.engine.begin() as conn:
        store_event(conn, raw, parse_event(raw))
    assert wait_applied(pg_daemon, "evt_unnotified", timeout=5.0) == "applied"


def test_the_applier_mode_is_chosen_by_database_and_validated(tmp_path: Path) -> None:
    sqlite = f"sqlite:///{tmp_path}/s.db"
    postgres = "postgresql://postgres@127.0.0.1:5432/test"
    assert not uses_process(settings_for(sqlite, tmp_path))
    assert uses_process(settings_for(postgres, tmp_path))  # auto
    assert not uses_process(settings_for(postgres, tmp_path, SYNCD_STRIPE_APPLIER="thread"))
    with pytest.raises(ConfigError, match=r"stripe\.applier"):
        settings_for(sqlite, tmp_path, SYNCD_STRIPE_APPLIER="process")
    with pytest.raises(ConfigError, match=r"stripe\.applier"):
        settings_for(postgres, tmp_path, SYNCD_STRIPE_APPLIER="fork")


def test_restart_delay_backs_off_and_starts_over_after_a_healthy_run() -> None:
    delays = [RESTART_DELAY_MIN_S]
    for _ in range(8):  # a child dying at once, again and again
        delays.append(restart_delay(delays[-1], lived=0.2))
    assert delays[:4] == [0.5, 1.0, 2.0, 4.0] and delays[-1] == RESTART_DELAY_MAX_S
    assert restart_delay(RESTART_DELAY_MAX_S, lived=HEALTHY_AFTER_S + 1) == RESTART_DELAY_MIN_S


@pytest.mark.postgres
def test_while_no_child_runs_the_scheduled_job_applies_in_process(pg_daemon: Daemon) -> None:
    from syncd import jobs

    pg_daemon.start_applier()
    applier = pg_daemon.applier
    assert applier is not None and applier.wait_ready(60) and applier.alive
    applier.stopping()  # no restart: the gap a crash opens, held open
    assert applier.pid is not None
    os.kill(applier.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while applier.alive and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not applier.alive
    raw = event_body("evt_in_gap", "customer.created")
    with pg_daemon.engine.begin() as conn:
        store_event(conn, raw, parse_event(raw))
    jobs.set_current_daemon(pg_daemon)
    try:
        assert jobs.apply_stripe_inbox() == 1  # applied here, not left to a child that is gone
    finally:
        jobs.set_current_daemon(None)
    assert wait_applied(pg_daemon, "evt_in_gap", timeout=0.1) == "applied"
