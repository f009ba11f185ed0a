"""The plugin system and the publish pump: loading, validation, per-adapter cursors and backoff."""

from __future__ import annotations

import ast
import json
import re
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from syncd import hookspecs
from syncd.cli import main
from syncd.config import CatalogSettings, DatabaseSettings, RedisSettings, Settings
from syncd.daemon import Daemon
from syncd.db import session_scope
from syncd.exceptions import StartupError
from syncd.hookspecs import Change, hookimpl
from syncd.models import ChangeLog
from syncd.plugins import BUILTIN, Plugins
from syncd.publish import PublishPump
from syncd.services.changes import USAGE_CHANGED, entitlements_changed, record_event, usage_changed

from .cli_helpers import ROOT, run_cli, syncd_env


class Recorder:
    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.resyncs = 0
        self.started = self.stopped = False

    @hookimpl
    def syncd_startup(self) -> None:
        self.started = True

    @hookimpl
    def syncd_shutdown(self) -> None:
        self.stopped = True

    @hookimpl
    def syncd_publish(self, changes: Sequence[Change]) -> None:
        self.batches.append([c.seq for c in changes])

    @hookimpl
    def syncd_resync(self) -> None:
        self.resyncs += 1

    @property
    def seqs(self) -> list[int]:
        return [s for batch in self.batches for s in batch]


class Failing(Recorder):
    """Raises for the first ``failures`` calls, recording what it was offered."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.offered: list[list[int]] = []

    @hookimpl
    def syncd_publish(self, changes: Sequence[Change]) -> None:
        self.offered.append([c.seq for c in changes])
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("target down")
        self.batches.append([c.seq for c in changes])


class Misspelled:
    @hookimpl
    def syncd_publsh(self, changes: Sequence[Change]) -> None:
        raise AssertionError("never called")


def _settings(url: str, plugins: dict[str, dict[str, Any]]) -> Settings:
    return Settings(
        database=DatabaseSettings(url=SecretStr(url)), catalog=CatalogSettings(path=None), plugins=plugins
    )


@pytest.fixture
def make_daemon(sqlite_url: str) -> Iterator[Any]:
    made: list[Daemon] = []

    def make(extra: dict[str, object], url: str = sqlite_url, **plugins: dict[str, Any]) -> Daemon:
        daemon = Daemon(_settings(url, plugins), extra_plugins=extra)
        daemon.prepare()
        made.append(daemon)
        return daemon

    yield make
    for daemon in made:
        daemon.close()


def change(daemon: Daemon, *company_ids: str) -> None:
    with session_scope(daemon.engine) as session:
        entitlements_changed(session, company_ids)


def pump(daemon: Daemon) -> PublishPump:
    assert daemon.publisher is not None
    return daemon.publisher


# -- loading and validation -------------------------------------------------------------------
def test_only_builtin_and_enabled_adapters_are_loaded(sqlite_url: str) -> None:
    plugins = Plugins.load(_settings(sqlite_url, {}))
    assert plugins.names() == [BUILTIN]
    with_redis = _settings(sqlite_url, {})
    with_redis = Settings(
        database=with_redis.database,
        catalog=with_redis.catalog,
        redis=RedisSettings(url=SecretStr("redis://127.0.0.1:6379/0")),
        plugins={"webhook": {"enabled": "false"}},
    )
    assert sorted(Plugins.load(with_redis).names()) == sorted([BUILTIN, "redis"])


def test_unknown_hook_name_is_rejected_at_startup(sqlite_url: str) -> None:
    daemon = Daemon(_settings(sqlite_url, {}), extra_plugins={"typo": Misspelled()})
    try:
        with pytest.raises(StartupError, match=r"plugin 'typo': implements unknown hook 'syncd_publsh'"):
            daemon.prepare()
    finally:
        daemon.close()


def test_enabled_adapter_that_is_not_installed_is_a_startup_error(sqlite_url: str) -> None:
    with pytest.raises(StartupError, match=r"\[plugins.nosuch\] is enabled but no adapter"):
        Plugins.load(_settings(sqlite_url, {"nosuch": {"enabled": True}}))
    with pytest.raises(StartupError, match="expected true or false"):
        Plugins.load(_settings(sqlite_url, {"webhook": {"enabled": "perhaps"}}))


def test_hook_with_an_argument_the_spec_lacks_is_rejected(sqlite_url: str) -> None:
    class Greedy:
        @hookimpl
        def syncd_publish(self, changes: Sequence[Change], extra: int) -> None: ...

    with pytest.raises(StartupError, match="plugin 'greedy'"):
        Plugins.load(_settings(sqlite_url, {}), extra={"greedy": Greedy()})


def test_cli_plugins_lists_enabled_state(tmp_path: Path) -> None:
    result = run_cli("plugins", env=syncd_env(tmp_path, SYNCD_REDIS_URL="redis://127.0.0.1:6379/0"))
    assert result.returncode == 0, result.stderr
    rows = {p["name"]: p for p in json.loads(result.stdout)}
    assert rows["redis"]["enabled"] is True
    assert rows["webhook"]["enabled"] is False and rows["asgi"]["enabled"] is False


def test_cli_resync_of_unknown_adapter_is_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for key, value in syncd_env(tmp_path, SYNCD_CATALOG_PATH="").items():
        monkeypatch.setenv(key, value)
    assert main(["db", "upgrade"]) == 0
    assert main(["adapters", "resync", "nosuch"]) == 1
    err = capsys.readouterr().err
    assert "no enabled adapter 'nosuch'" in err and "Traceback" not in err


# -- the README documents exactly the hookspecs ----------------------------------------------------
def _signature(fn: ast.FunctionDef) -> str:
    args = ", ".join(f"{a.arg}: {ast.unparse(a.annotation)}" for a in fn.args.args if a.annotation)
    return f"{fn.name}({args}) -> {ast.unparse(fn.returns) if fn.returns else 'None'}"


def test_readme_documents_every_hook_with_its_exact_signature() -> None:
    spec_tree = ast.parse(Path(hookspecs.__file__).read_text())
    specs = {
        _signature(node)
        for node in spec_tree.body
        if isinstance(node, ast.FunctionDef)
        and any(isinstance(d, ast.Name) and d.id == "hookspec" for d in node.decorator_list)
    }
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Plugin hooks\n", 1)[1].split("\n## ", 1)[0]
    documented = set()
    for block in re.findall(r"```python\n(.*?)```", section, re.S):
        tree = ast.parse(block)
        documented |= {_signature(n) for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert len(specs) == 4
    assert documented == specs


# -- the publish pump -------------------------------------------------------------------------------
def test_failing_adapter_does_not_block_another_and_gets_its_batch_again(make_daemon: Any) -> None:
    good, bad = Recorder(), Failing(failures=2)
    daemon = make_daemon({"good": good, "bad": bad}, bad={"retry_initial_s": 0.3, "retry_max_s": 0.3})
    assert good.started and bad.started
    change(daemon, "comp_a", "comp_b")
    change(daemon, "comp_c")
    p = pump(daemon)
    p.run_all()
    assert good.resyncs == 1 and bad.resyncs == 1  # start-up resync precedes the first publish
    assert good.seqs == [1, 2, 3]
    assert bad.batches == [] and bad.offered == [[1, 2, 3]]
    assert p.cursor("good") == 3 and p.cursor("bad") == 0
    metrics = daemon.metrics.render().decode()
    assert 'syncd_delivery_failures_total{adapter="bad"} 1.0' in metrics
    assert 'syncd_adapter_cursor_lag{adapter="bad"} 3.0' in metrics
    assert 'syncd_adapter_cursor_lag{adapter="good"} 0.0' in metrics
    p.run("bad")  # still backing off: not even offered
    assert bad.offered == [[1, 2, 3]]
    change(daemon, "comp_d")
    p.run("good")
    assert good.seqs == [1, 2, 3, 4]
    deadline = time.monotonic() + 5
    while not bad.batches and time.monotonic() < deadline:
        time.sleep(0.06)
        p.run("bad")
    assert bad.offered[-1] == [1, 2, 3, 4]  # the failed rows again, with what arrived meanwhile
    assert bad.seqs == [1, 2, 3, 4] and p.cursor("bad") == 4
    assert 'syncd_adapter_cursor_lag{adapter="bad"} 0.0' in daemon.metrics.render().decode()


def test_batches_are_bounded_ordered_and_carry_events(make_daemon: Any) -> None:
    rec = Recorder()
    daemon = make_daemon({"rec": rec})
    with session_scope(daemon.engine) as session:
        entitlements_changed(session, ["comp_a"])
        record_event(session, "company.plan_changed", "comp_a", {"plan_id": "plan_x"})
    change(daemon, "all_b", "all_c", "all_d")
    p = pump(daemon)
    p.batch_size = 2
    assert p.run("rec") == 5
    assert rec.batches == [[1, 2], [3, 4], [5]]


class Keeper(Recorder):
    def __init__(self) -> None:
        super().__init__()
        self.changes: list[Change] = []

    @hookimpl
    def syncd_publish(self, changes: Sequence[Change]) -> None:
        self.changes.extend(changes)


def test_a_usage_row_reaches_adapters_as_one_change_per_company(make_daemon: Any) -> None:
    keeper = Keeper()
    daemon = make_daemon({"keep": keeper})
    with session_scope(daemon.engine) as session:
        usage_changed(session, ["comp_a", "comp_b"])
    with session_scope(daemon.engine) as session:
        session.add(ChangeLog(topic=USAGE_CHANGED, company_id=None, payload={"company_ids": []}))
    change(daemon, "comp_c")
    assert pump(daemon).run("keep") == 3
    seen = [(c.seq, c.topic, c.company_id, c.payload) for c in keeper.changes]
    assert seen == [
        (1, "entitlements.changed", "comp_a", {"usage": True}),
        (1, "entitlements.changed", "comp_b", {"usage": True}),
        (3, "entitlements.changed", "comp_c", {}),
    ]
    assert pump(daemon).run("keep") == 0  # the empty usage row did not hold the cursor back


def test_restart_resumes_from_the_cursor_with_nothing_lost(make_daemon: Any, database_url: str) -> None:
    first, failing = Recorder(), Failing(failures=100)
    daemon = make_daemon({"rec": first, "flaky": failing}, url=database_url)
    change(daemon, "comp_a")
    change(daemon, "comp_b")
    pump(daemon).run_all()
    assert first.seqs == [1, 2] and failing.batches == []
    daemon.close()
    assert first.stopped
    # Changes made while no daemon runs are published after the restart, to both adapters.
    writer = make_daemon({}, url=database_url)
    change(writer, "comp_c")
    writer.close()  # one daemon per SQLite file at a time
    second, recovered = Recorder(), Recorder()
    restarted = make_daemon({"rec": second, "flaky": recovered}, url=database_url)
    pump(restarted).run_all()
    assert second.seqs == [3]
    assert recovered.seqs == [1, 2, 3]


def test_a_new_adapter_starts_at_the_end_of_the_log(make_daemon: Any) -> None:
    daemon = make_daemon({})
    change(daemon, "comp_a")
    daemon.close()
    late = Recorder()
    restarted = make_daemon({"late": late})
    pump(restarted).run_all()
    assert late.seqs == [] and late.resyncs == 1
    change(restarted, "comp_b")
    pump(restarted).run_all()
    assert late.seqs == [2]


def test_resync_on_demand_and_after_a_failed_resync(make_daemon: Any) -> None:
    class FlakyResync(Recorder):
        def __init__(self) -> None:
            super().__init__()
            self.fail_next = True

        @hookimpl
        def syncd_resync(self) -> None:
            if self.fail_next:
                self.fail_next = False
                raise ConnectionError("down")
            self.resyncs += 1

    rec = FlakyResync()
    daemon = make_daemon({"rec": rec}, rec={"retry_initial_s": 0.01, "retry_max_s": 0.01})
    change(daemon, "comp_a")
    p = pump(daemon)
    p.run("rec")
    assert rec.resyncs == 0 and rec.seqs == []  # nothing is published before the resync succeeded
    time.sleep(0.03)
    p.run("rec")
    assert rec.resyncs == 1 and rec.seqs == [1]
    assert p.request_resync("rec") == ["rec"]
    p.run("rec")
    assert rec.resyncs == 2


def test_redis_backoff_is_capped_at_two_seconds_by_default(make_daemon: Any) -> None:
    """Host apps read Redis directly: after an outage syncd must be back within seconds."""
    flaky_redis, other = Failing(failures=100), Failing(failures=100)
    daemon = make_daemon({"redis": flaky_redis, "other": other})
    p = pump(daemon)
    change(daemon, "comp_a")
    for _ in range(8):
        for name in ("redis", "other"):
            p.adapters[name].retry_at = 0.0  # skip the wait: fail again at once
            p.run(name)
    now = time.monotonic()
    assert 0 < p.adapters["redis"].retry_at - now <= 2.0
    assert p.adapters["other"].retry_at - now > 2.0  # the general cap stays 60 s
