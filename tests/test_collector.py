"""Bulk work raises the collector's first threshold while it runs, and puts it back."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest

from syncd.collector import BULK_THRESHOLD, fewer_collections
from syncd.models import utcnow
from syncd.stripe_sync.mapping import MappingContext
from syncd.stripe_sync.sweep_pool import PagePool, SweepResult


@pytest.fixture(autouse=True)
def _default_threshold() -> Iterator[None]:
    saved = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield
    gc.set_threshold(*saved)


def test_threshold_raised_inside_and_restored_after() -> None:
    with fewer_collections():
        assert gc.get_threshold() == (BULK_THRESHOLD, 10, 10)
    assert gc.get_threshold() == (700, 10, 10)


def test_a_higher_threshold_is_kept() -> None:
    gc.set_threshold(100_000, 5, 5)
    with fewer_collections():
        assert gc.get_threshold() == (100_000, 5, 5)
    assert gc.get_threshold() == (100_000, 5, 5)


def test_overlapping_users_restore_only_when_the_last_leaves() -> None:
    entered, release = threading.Event(), threading.Event()

    def other() -> None:
        with fewer_collections():
            entered.set()
            release.wait(5)

    thread = threading.Thread(target=other)
    thread.start()
    assert entered.wait(5)
    with fewer_collections():
        assert gc.get_threshold()[0] == BULK_THRESHOLD
    assert gc.get_threshold()[0] == BULK_THRESHOLD  # the other thread is still inside
    release.set()
    thread.join(5)
    assert gc.get_threshold() == (700, 10, 10)


def test_restored_when_the_block_raises() -> None:
    with pytest.raises(RuntimeError), fewer_collections():
        raise RuntimeError("page failed")
    assert gc.get_threshold() == (700, 10, 10)


def test_a_page_pool_runs_its_pages_with_fewer_collections(sqlite_url: str) -> None:
    from syncd import migrate
    from syncd.db import make_engine

    engine = make_engine(sqlite_url)
    migrate.upgrade(engine)
    seen: list[int] = []

    def apply(_session: object, _ctx: object, page: object) -> SweepResult:
        seen.append(gc.get_threshold()[0])
        return SweepResult(stored=1)

    def context() -> MappingContext:
        return MappingContext(now=utcnow())

    pool = PagePool(engine, "customer", None, apply, context, result=SweepResult())  # type: ignore[arg-type]
    with pool:
        pool.submit([{"id": "cus_1"}])
    assert seen == [BULK_THRESHOLD]
    assert gc.get_threshold() == (700, 10, 10)
    engine.dispose()


def test_a_serving_process_keeps_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    import syncd.collector as collector

    monkeypatch.setattr(collector, "_serving", False)
    collector.keep_default()
    with fewer_collections():
        assert gc.get_threshold() == (700, 10, 10)  # request latency first
    assert gc.get_threshold() == (700, 10, 10)


def test_a_pool_left_without_entering_changes_nothing(sqlite_url: str) -> None:
    from syncd import migrate
    from syncd.db import make_engine

    engine = make_engine(sqlite_url)
    migrate.upgrade(engine)
    pool = PagePool(
        engine,
        "customer",
        None,
        lambda *_: SweepResult(),
        lambda: MappingContext(now=utcnow()),
        result=SweepResult(),
    )
    pool.__exit__(None, None, None)
    assert gc.get_threshold() == (700, 10, 10)
    engine.dispose()
