"""Prompt publishing: commits that write change-log rows wake each adapter's runner at once
(Postgres: NOTIFY from any process; SQLite: the committing session), with no scheduler."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from sqlalchemy import create_engine
from sqlmodel import Session

from syncd.daemon import Daemon
from syncd.hookspecs import Change, hookimpl
from syncd.services.changes import _watchers, entitlements_changed

from .test_plugins import Recorder, change, make_daemon, pump

__all__ = ["make_daemon"]  # the fixture, shared with test_plugins


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def lead(daemon: Daemon) -> None:
    if daemon.engine.dialect.name == "postgresql":
        assert daemon.leadership.renew()


def runner_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("publish-")]


def test_a_commit_reaches_the_adapter_without_any_scheduler(make_daemon: Any, database_url: str) -> None:
    rec = Recorder()
    daemon = make_daemon({"rec": rec}, url=database_url)
    lead(daemon)
    p = pump(daemon)
    p.start(min_gap_s=0.0)
    try:
        change(daemon, "comp_a")
        assert wait_for(lambda: rec.seqs == [1]), rec.batches
        assert rec.resyncs == 1  # the start-up resync ran first, in the same prompt run
        change(daemon, "comp_b")
        assert wait_for(lambda: rec.seqs == [1, 2]), rec.batches
    finally:
        p.stop()
    assert runner_threads() == [] and _watchers == {}


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
        assert wait_for(lambda: rec.resyncs == 1)  # the listener's first wake-up
        with Session(other) as session:
            entitlements_changed(session, ["comp_elsewhere"])
            session.commit()
        assert wait_for(lambda: rec.seqs == [1]), rec.batches
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
        lead(daemon)
        change(daemon, "comp_b")
        assert wait_for(lambda: rec.seqs == [1, 2]), rec.batches
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


def test_a_run_asked_for_during_a_run_goes_round_again(make_daemon: Any) -> None:
    gate = Gate()
    daemon = make_daemon({"gate": gate})
    p = pump(daemon)
    change(daemon, "comp_a")
    totals: list[int] = []
    first = threading.Thread(target=lambda: totals.append(p.run("gate")))
    first.start()
    assert gate.entered.wait(10)
    change(daemon, "comp_b")  # committed after the first run read the log
    assert p.run("gate") == 0  # busy: it leaves the work to the run under way
    gate.release.set()
    first.join(10)
    assert totals == [2] and gate.batches == [[1], [2]]


def test_a_burst_of_commits_during_the_gap_is_one_batch(make_daemon: Any) -> None:
    rec = Recorder()
    daemon = make_daemon({"rec": rec})
    p = pump(daemon)
    p.start(min_gap_s=1.0)
    try:
        change(daemon, "comp_a")
        assert wait_for(lambda: rec.seqs == [1])
        for i in range(5):
            change(daemon, f"comp_{i}")
        assert wait_for(lambda: len(rec.seqs) == 6)
        assert rec.batches == [[1], [2, 3, 4, 5, 6]]
    finally:
        p.stop()


@pytest.mark.parametrize("closing", ["stop", "close"])
def test_stopping_ends_the_runners(make_daemon: Any, closing: str) -> None:
    daemon = make_daemon({"rec": Recorder()})
    pump(daemon).start(min_gap_s=0.0)
    assert runner_threads() == ["publish-rec"] and _watchers
    pump(daemon).stop() if closing == "stop" else daemon.stop_plugins()
    assert runner_threads() == [] and _watchers == {}
