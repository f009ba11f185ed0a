"""The adapter's hooks through pluggy, the background worker, and concurrent workers."""

from __future__ import annotations

import collections
import datetime as dt
import threading
import time

import pluggy
import pytest
from pydantic import SecretStr
from sqlalchemy import Engine
from standardwebhooks import Webhook

from syncd import hookspecs
from syncd.config import CatalogSettings, DatabaseSettings, SchedulerSettings, Settings
from syncd.daemon import Daemon
from syncd.db import session_scope
from syncd.exceptions import ConfigError, StartupError
from syncd.hookspecs import Change
from syncd.services.changes import record_event
from syncd.webhooks_out.config import parse
from syncd_webhook import plugin

from .conftest import FAST, add_endpoint, deliveries, drain, publish_changes
from .receiver import Receiver

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _events(companies: int, per_company: int) -> list[Change]:
    return [
        Change(
            i * companies + c + 1,
            "company.updated",
            f"comp_{c}",
            NOW,
            {"body": {"company": f"comp_{c}", "n": i}},
        )
        for i in range(per_company)
        for c in range(companies)
    ]


def _daemon(sqlite_url: str, **webhook: object) -> Daemon:
    settings = Settings(
        database=DatabaseSettings(url=SecretStr(sqlite_url)),
        catalog=CatalogSettings(path=None),
        scheduler=SchedulerSettings(enabled=False),
        plugins={"webhook": {"enabled": True, "poll_interval_s": 0.05, "retry_max_s": 5, **webhook}},
    )
    daemon = Daemon(settings)
    daemon.prepare()  # loads the adapter from its entry point and calls syncd_startup
    return daemon


def test_daemon_publish_pump_feeds_the_adapter_and_the_worker_delivers(
    sqlite_url: str, receiver: Receiver
) -> None:
    daemon = _daemon(sqlite_url)
    try:
        assert daemon.plugins is not None and "webhook" in daemon.plugins.publishers()
        assert daemon.publisher is not None
        adapter = daemon.plugins.pm.get_plugin("webhook")
        assert adapter.worker is not None and adapter.worker.running
        hook = add_endpoint(daemon.engine, receiver.url, ["company.updated"])
        with session_scope(daemon.engine) as session:
            for n in range(3):
                for company in ("comp_0", "comp_1"):
                    record_event(session, "company.updated", company, {"body": {"company": company, "n": n}})
        assert daemon.publisher.run("webhook") == 6  # the pump hands the batch to syncd_publish
        got = receiver.wait_for(6, timeout=10)
        assert daemon.publisher.run("webhook") == 0
    finally:
        daemon.close()  # syncd_shutdown stops the worker
    assert not adapter.worker
    for received in got:
        Webhook(hook.secret).verify(received.body, received.headers)
    for company in ("comp_0", "comp_1"):
        assert [r.json["body"]["n"] for r in got if r.json["company_id"] == company] == [0, 1, 2]
    assert len(receiver.received) == 6


def test_adapter_hooks_match_the_specs_and_a_batch_twice_is_harmless(
    sqlite_url: str, receiver: Receiver
) -> None:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(plugin.make_plugin({"deliver": False}, Settings()), name="webhook")
    pm.check_pending()  # every hookimpl matches a spec
    daemon = _daemon(sqlite_url, deliver=False)
    try:
        add_endpoint(daemon.engine, receiver.url, ["company.updated"])
        pm.hook.syncd_startup(daemon=daemon)
        pm.hook.syncd_publish(daemon=daemon, changes=_events(2, 3))
        pm.hook.syncd_publish(daemon=daemon, changes=_events(2, 3))
        pm.hook.syncd_resync(daemon=daemon)
        pm.hook.syncd_shutdown(daemon=daemon)
        assert len(deliveries(daemon.engine)) == 6
        assert receiver.received == []  # deliver = false: enqueued, not sent by this process
    finally:
        daemon.close()


def test_bad_settings_are_refused_at_start(sqlite_url: str) -> None:
    for bad in ({"signature": "md5"}, {"max_attempts": 0}, {"timeout_s": "10"}, {"retries": 3}):
        with pytest.raises(ConfigError, match=r"\[plugins.webhook\]"):
            parse(bad)
    with pytest.raises(StartupError, match="adapter 'webhook' failed to load: ConfigError"):
        _daemon(sqlite_url, signature="md5")
    assert (
        parse({"signature": "both", "max_attempts": 2, "enabled": True, "retry_max_s": 3}).max_attempts == 2
    )


def test_concurrent_workers_send_each_delivery_once_and_in_order(
    any_engine: Engine, receiver: Receiver
) -> None:
    add_endpoint(any_engine, receiver.url, ["company.updated"])
    publish_changes(any_engine, _events(20, 10))
    errors: list[BaseException] = []

    def work() -> None:
        try:
            drain(any_engine, FAST)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    got = receiver.wait_for(200)
    ids = collections.Counter(r.headers["webhook-id"] for r in got)
    assert len(ids) == 200 and set(ids.values()) == {1}
    for c in range(20):
        assert [r.json["body"]["n"] for r in got if r.json["company_id"] == f"comp_{c}"] == list(range(10))


def test_worker_survives_a_round_failure(engine: Engine, receiver: Receiver) -> None:
    """A database error in a round is logged and retried, not fatal to the thread."""
    from sqlalchemy import text

    from syncd.webhooks_out.worker import DeliveryWorker

    add_endpoint(engine, receiver.url, ["company.updated"])
    publish_changes(engine, _events(1, 1))
    with engine.begin() as conn:  # rounds fail while the table is missing
        conn.execute(text("ALTER TABLE webhook_delivery RENAME TO webhook_delivery_away"))
    worker = DeliveryWorker(engine, FAST).start()
    try:
        time.sleep(0.2)
        assert worker.running and receiver.received == []
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE webhook_delivery_away RENAME TO webhook_delivery"))
        worker.wake()
        receiver.wait_for(1, timeout=10)
    finally:
        worker.stop()
    assert not worker.running
