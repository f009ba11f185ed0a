"""The command line: exit codes, one-line errors, masked output, keys, plugins."""

from __future__ import annotations

import json
from pathlib import Path

from sqlmodel import Session, select

from syncd.apikeys import digest
from syncd.db import make_engine
from syncd.models import ApiKey

from .cli_helpers import run_cli, syncd_env


def assert_one_line_error(stderr: str, needle: str) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert needle in lines[0]
    assert "Traceback" not in stderr


def test_config_check_prints_effective_config_with_secrets_masked(tmp_path: Path) -> None:
    env = syncd_env(
        tmp_path, SYNCD_STRIPE_API_KEY="sk_test_topsecret", SYNCD_DATABASE_URL="postgresql://a:pw9@h/d"
    )
    result = run_cli("config", "check", env=env)
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)
    assert config["stripe"]["api_key"] == "**********"
    assert config["stripe"]["mode"] == "stripe"
    assert "topsecret" not in result.stdout and "pw9" not in result.stdout


def test_invalid_config_exits_2_with_one_line(tmp_path: Path) -> None:
    result = run_cli("config", "check", env=syncd_env(tmp_path, SYNCD_SERVER_PORT="http"))
    assert result.returncode == 2
    assert_one_line_error(result.stderr, "server.port")


def test_unreachable_database_is_one_line_and_non_zero(tmp_path: Path) -> None:
    env = syncd_env(tmp_path, SYNCD_DATABASE_URL="postgresql://nobody:secretpw@127.0.0.1:1/none")
    result = run_cli("db", "upgrade", env=env)
    assert result.returncode == 1
    assert_one_line_error(result.stderr, "cannot reach the database")
    assert "secretpw" not in result.stderr


def test_missing_postgres_database_is_one_line(tmp_path: Path, postgres_url: str) -> None:
    missing = postgres_url.rsplit("/", 1)[0] + "/syncd_does_not_exist"
    result = run_cli("run", env=syncd_env(tmp_path, SYNCD_DATABASE_URL=missing))
    assert result.returncode == 1
    assert_one_line_error(result.stderr, "cannot reach the database")


def test_db_upgrade_then_check(tmp_path: Path) -> None:
    env = syncd_env(tmp_path)
    assert run_cli("db", "check", env=env).returncode == 1  # empty database is behind
    upgraded = run_cli("db", "upgrade", env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    assert run_cli("db", "check", env=env).returncode == 0


def test_keys_create_prints_the_key_alone_on_the_last_line(tmp_path: Path) -> None:
    env = syncd_env(tmp_path)
    result = run_cli("keys", "create", "--kind", "readonly", "--name", "dashboards", env=env)
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip().splitlines()[-1]
    assert key.startswith("sch_ro_") and " " not in key
    engine = make_engine(f"sqlite:///{tmp_path / 'data' / 'syncd.db'}")
    with Session(engine) as session:
        row = session.exec(select(ApiKey)).one()
    assert row.key_hash == digest(key) and row.kind == "readonly" and row.name == "dashboards"


def test_keys_create_rejects_unknown_kind(tmp_path: Path) -> None:
    result = run_cli("keys", "create", "--kind", "root", env=syncd_env(tmp_path))
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


def test_plugins_lists_first_party_adapters_with_versions(tmp_path: Path) -> None:
    result = run_cli("plugins", env=syncd_env(tmp_path))
    assert result.returncode == 0, result.stderr
    plugins = {p["name"]: p for p in json.loads(result.stdout)}
    assert {"asgi", "redis", "webhook"} <= set(plugins)
    assert plugins["redis"]["module"] == "syncd_redis.plugin"
    assert plugins["redis"]["version"]


def test_stripe_emulator_command_serves_the_stripe_api(tmp_path: Path) -> None:
    import subprocess
    import sys
    import time

    import httpx
    import stripe

    from .cli_helpers import ROOT
    from .conftest import free_port

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "syncd", "stripe-emulator", "--port", str(port), "--seed", "7"],
        env=syncd_env(tmp_path),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                if httpx.get(f"{base}/_emulator/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        client = stripe.StripeClient("sk_test_cli", base_addresses={"api": base})
        customer = client.v1.customers.create({"email": "cli@example.com"})
        assert customer.id.startswith("cus_")
        assert client.v1.customers.retrieve(customer.id).email == "cli@example.com"
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_catalog_apply_shows_a_diff_is_idempotent_and_dry_run_writes_nothing(tmp_path: Path) -> None:
    from .cli_helpers import ROOT

    env = syncd_env(tmp_path)
    catalog = str(ROOT / "config" / "catalog.toml")
    dry = run_cli("catalog", "apply", catalog, "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    assert "+ plan pro" in dry.stdout
    assert "would change" in dry.stdout
    exported_after_dry = run_cli("catalog", "export", env=env)
    assert 'key = "pro"' not in exported_after_dry.stdout  # nothing was written

    first = run_cli("catalog", "apply", catalog, env=env)
    assert first.returncode == 0, first.stderr
    assert "+ feature api-calls" in first.stdout
    second = run_cli("catalog", "apply", catalog, env=env)
    assert second.returncode == 0
    assert second.stdout.strip() == "catalog already up to date"

    exported = run_cli("catalog", "export", "--format", "yaml", env=env)
    assert exported.returncode == 0
    round_trip = tmp_path / "exported.yaml"
    round_trip.write_text(exported.stdout)
    again = run_cli("catalog", "apply", str(round_trip), env=env)
    assert again.stdout.strip() == "catalog already up to date"


def test_catalog_apply_rejects_an_invalid_file_naming_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[features]]\nkey = "x"\nname = "X"\ntype = "nonsense"\n')
    result = run_cli("catalog", "apply", str(bad), env=syncd_env(tmp_path))
    assert result.returncode == 1
    assert "features[0].type" in result.stderr
    assert "Traceback" not in result.stderr
