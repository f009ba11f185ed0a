"""Prompt publishing: commits that write change-log rows wake each adapter's runner at once
(Postgres: NOTIFY from any process; SQLite: the committing session), with no scheduler."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest
from sqlalchemy import create_engine
from sqlmodel import Session

from syncd.daemon import Daemon
from syncd.db import session_scope
from syncd.hookspecs import Change, hookimpl
from syncd.models import SyncCursor
from syncd.publish import PublishPump
from syncd.services.changes import _watchers, entitlements_changed

from .adapters.asgi_support import wait_for
from .test_plugins import Recorder, change, make_daemon, pump

__all__ = ["make_daemon"]  # the fixture, shared with test_plugins


def lead(daemon: Daemon) -> None:
    if daemon.engine.dialect.name == "postgresql":
        assert daemon.leadership.renew()


def stopped(daemon: Daemon, p: PublishPump) -> bool:
    """The pump's runners and its wake-up sources are gone."""
    return not p._threads and p._listener is None and id(daemon.engine) not in _watchers


def test_a_commit_reaches_the_adapter_without_any_scheduler(make_daemon: Any, database_url: str) -> None:
    rec = Recorder()
    daemon = make_daemon({"rec": rec}, url=database_url)
    lead(daemon)
    p = pump(daemon)
    p.start(min_gap_s=0.0)
    try:
        change(daemon, "comp_a")
        wait_for(lambda: rec.seqs == [1], timeout=10)
        assert rec.resyncs == 1  # the start-up resync ran first, in the same prompt run
        change(daemon, "comp_b")
        wait_for(lambda: rec.seqs == [1, 2], timeout=10)
    finally:
        threads = list(p._threads)
        p.stop()
    assert stopped(daemon, p) and not any(t.is_alive() for t in threads)


def test_postgres_commits_of_other_processes_wake_it_through_notify(
    make_daemon: Any, postgres_url: str
) -> None:
    rec = Recorder()
    daemon = make_daemon({"rec": rec}, url=postgres_url)
    lead(daemon)
    p = pump(daemon)
    p.start(min_gap_s=0.0)
    other = create_engine(postgres_url)  # another process as far as Postgres can tell
    try:
        wait_for(lambda: rec.resyncs == 1, timeout=10)  # the listener's first wake-up
        with Session(other) as session:
            entitlements_changed(session, ["comp_elsewhere"])
            session.commit()
        wait_for(lambda: rec.seqs == [1], timeout=10)
    finally:
        other.dispose()
        p.stop()


def test_a_follower_is_woken_but_does_not_publish(make_daemon: Any, postgres_url: str) -> None:
    rec = Recorder()
    daemon = make_daemon({"rec": rec}, url=postgres_url)
    p = pump(daemon)
    p.start(min_gap_s=0.0)
    try:
        change(daemon, "comp_a")
        time.sleep(0.5)
        assert rec.seqs == [] and rec.resyncs == 0
        lead(daemon)  # becoming leader wakes the runners: no further commit needed
        wait_for(lambda: rec.seqs == [1], timeout=10)
    finally:
        p.stop()


class Gate(Recorder):
    """Holds its first publish until released, as a slow target would."""

    def __init__(self) -> None:
        super().__init__()
        self.entered, self.release = threading.Event(), threading.Event()

    @hookimpl
    def syncd_publish(self, changes: Sequence[Change]) -> None:
        self.entered.set()
        assert self.release.wait(10)
        self.batches.append([c.seq for c in changes])


def test_commits_during_a_run_are_published_together_by_the_next(make_daemon: Any) -> None:
    gate = Gate()
    daemon = make_daemon({"gate": gate})
    p = pump(daemon)
    p.start(min_gap_s=0.0)
    try:
        change(daemon, "comp_a")
        assert gate.entered.wait(10)  # the runner is inside its first publish
        for i in range(5):
            change(daemon, f"comp_{i}")  # committed after that run read the log
        assert p.run("gate") == 0  # busy: the call leaves it to the runner, without waiting
        gate.release.set()
        wait_for(lambda: len(gate.seqs) == 6, timeout=10)
        assert gate.batches == [[1], [2, 3, 4, 5, 6]]
    finally:
        p.stop()


def test_a_call_finding_the_adapter_busy_hands_the_work_to_its_runner(
    make_daemon: Any, sqlite_url: str
) -> None:
    rec = Recorder()
    daemon = make_daemon({"rec": rec}, url=sqlite_url)
    p = pump(daemon)
    p.start(min_gap_s=0.0)
    other = create_engine(sqlite_url)  # commits through it wake nothing (another process's would not)
    try:
        with p.adapters["rec"].lock:  # a scheduled run under way
            with Session(other) as session:
                entitlements_changed(session, ["comp_a"])
                session.commit()
            assert p.run("rec") == 0  # returns at once...
        wait_for(lambda: rec.seqs == [1], timeout=10)  # ...and the runner publishes it
    finally:
        other.dispose()
        p.stop()


def test_the_cursor_never_moves_back(make_daemon: Any, database_url: str) -> None:
    """A publisher that overlapped a newer one (the previous leader finishing its batch)
    saves an older position last: the saved cursor stays where the newer one left it."""
    rec = Recorder()
    daemon = make_daemon({"rec": rec}, url=database_url)
    p = pump(daemon)
    for company in ("comp_a", "comp_b", "comp_c"):
        change(daemon, company)
    p.run("rec")
    assert p.cursor("rec") == 3
    p._save_cursor("rec", 2)
    assert p.cursor("rec") == 3
    with session_scope(daemon.engine) as session:  # deleted by hand: recreated on the next save
        session.delete(session.get(SyncCursor, "adapter:rec"))
    p._save_cursor("rec", 3)
    assert p.cursor("rec") == 3


def test_an_empty_cursor_reads_from_the_start(make_daemon: Any, database_url: str) -> None:
    rec = Recorder()
    daemon = make_daemon({"rec": rec}, url=database_url)
    with session_scope(daemon.engine) as session:
        saved = session.get(SyncCursor, "adapter:rec")
        assert saved is not None
        saved.value = ""
    change(daemon, "comp_a")
    assert pump(daemon).run("rec") == 1 and rec.seqs == [1]


@pytest.mark.parametrize("closing", ["stop", "close"])
def test_stopping_ends_the_runners(make_daemon: Any, closing: str) -> None:
    daemon = make_daemon({"rec": Recorder()})
    p = pump(daemon)
    p.start(min_gap_s=0.0)
    threads = list(p._threads)
    assert [t.name for t in threads] == ["publish-rec"] and id(daemon.engine) in _watchers
    p.stop() if closing == "stop" else daemon.stop_plugins()
    assert stopped(daemon, p) and not any(t.is_alive() for t in threads)
