"""Settings: precedence, secret handling, validation messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncd.config import load_settings, masked
from syncd.exceptions import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "syncd.toml"
    path.write_text(text)
    return path


def test_defaults_use_sqlite_in_data_dir_and_the_emulator(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, ""), environ={})
    assert settings.database_url == "sqlite:///data/syncd.db"
    assert settings.uses_stripe_emulator
    assert settings.server.port == 8000


def test_file_overrides_defaults_and_environment_overrides_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[server]\nport = 9000\nhost = "0.0.0.0"\n[log]\nlevel = "debug"\n')
    from_file = load_settings(path, environ={})
    assert (from_file.server.port, from_file.server.host, from_file.log.level) == (9000, "0.0.0.0", "debug")
    both = load_settings(path, environ={"SYNCD_SERVER_PORT": "9100"})
    assert both.server.port == 9100
    assert both.server.host == "0.0.0.0"


def test_config_path_can_come_from_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nport = 9200\n")
    assert load_settings(None, environ={"SYNCD_CONFIG": str(path)}).server.port == 9200


def test_documented_environment_variables_map_to_settings(tmp_path: Path) -> None:
    env = {
        "SYNCD_DATABASE_URL": "postgres://app:pw@db/syncd",
        "SYNCD_REDIS_URL": "redis://:pw@cache:6379/0",
        "SYNCD_STRIPE_API_KEY": "sk_test_123",
        "SYNCD_STRIPE_API_BASE": "http://127.0.0.1:12111",
        "SYNCD_STRIPE_WEBHOOK_SECRET": "whsec_abc,whsec_old",
    }
    settings = load_settings(write(tmp_path, ""), environ=env)
    assert settings.database_url == "postgresql+psycopg://app:pw@db/syncd"
    assert settings.redis.url is not None and settings.redis.url.get_secret_value().startswith("redis://")
    assert settings.stripe.api_base == "http://127.0.0.1:12111"
    assert not settings.uses_stripe_emulator


def test_secrets_are_masked_everywhere(tmp_path: Path) -> None:
    env = {
        "SYNCD_DATABASE_URL": "postgresql://app:hunter2@db/syncd",
        "SYNCD_STRIPE_API_KEY": "sk_test_supersecret",
        "SYNCD_STRIPE_WEBHOOK_SECRET": "whsec_supersecret",
        "SYNCD_REDIS_URL": "redis://:redispw@cache:6379/0",
    }
    settings = load_settings(write(tmp_path, ""), environ=env)
    shown = repr(settings) + str(masked(settings))
    for secret in ("hunter2", "supersecret", "redispw"):
        assert secret not in shown
    assert masked(settings)["database"]["url"] == "postgresql://app:***@db/syncd"


def test_secret_in_config_file_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, '[stripe]\napi_key = "sk_test_oops"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    assert "SYNCD_STRIPE_API_KEY" in str(info.value)


@pytest.mark.parametrize(
    ("env", "key", "hint"),
    [
        ({"SYNCD_SERVER_PORT": "eighty"}, "server.port", "integer"),
        ({"SYNCD_SERVER_PORT": "70000"}, "server.port", "1-65535"),
        ({"SYNCD_LOG_LEVEL": "loud"}, "log.level", "debug"),
        ({"SYNCD_SCHEDULER_ENABLED": "perhaps"}, "scheduler.enabled", "true or false"),
        ({"SYNCD_STRIPE_API_KEY": "pk_test_public"}, "stripe.api_key", "sk_"),
        ({"SYNCD_DATABASE_URL": "not a url"}, "database.url", "SYNCD_DATABASE_URL"),
        ({"SYNCD_STRIPE_SWEEP_WORKERS": "0"}, "stripe.sweep_workers", "1 to 8"),
        ({"SYNCD_STRIPE_SWEEP_PAGE_SIZE": "20"}, "stripe.sweep_page_size", "50 to 1000"),
        ({"SYNCD_SCHEDULER_PUBLISH_MIN_GAP_S": "1"}, "scheduler.publish_min_gap_s", "between 0 and"),
        (
            {
                "SYNCD_DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:5432/test",
                "SYNCD_STRIPE_SWEEP_WORKERS": "8",
                "SYNCD_STRIPE_SWEEP_PAGE_SIZE": "500",
            },
            "stripe.sweep_page_size",
            "lower stripe.sweep_page_size or stripe.sweep_workers",
        ),
    ],
)
def test_invalid_values_name_the_key_and_the_fix(
    tmp_path: Path, env: dict[str, str], key: str, hint: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, ""), environ=env)
    assert info.value.key == key
    assert hint in str(info.value)


def test_unknown_keys_and_sections_are_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown key"):
        load_settings(write(tmp_path, "[server]\nprot = 1\n"), environ={})
    with pytest.raises(ConfigError, match="unknown configuration section"):
        load_settings(write(tmp_path, "[sever]\nport = 1\n"), environ={})


def test_invalid_toml_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(write(tmp_path, "[server\n"), environ={})


def test_plugin_tables_are_passed_through(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, '[plugins.redis]\nchannel = "x"\n'), environ={})
    assert settings.plugin_config("redis") == {"channel": "x"}
    assert settings.plugin_config("absent") == {}


def test_shipped_config_files_load() -> None:
    """config/syncd.toml and the example (every key) are valid and agree on defaults."""
    from .cli_helpers import ROOT

    shipped = load_settings(ROOT / "config" / "syncd.toml", environ={})
    example = load_settings(ROOT / "config" / "syncd.example.toml", environ={})
    assert shipped.server.port == example.server.port == 8000
    assert example.stripe.api_version == shipped.stripe.api_version


@pytest.mark.parametrize(
    ("env", "page"),
    [
        ({}, 1000),
        ({"SYNCD_STRIPE_SWEEP_WORKERS": "3"}, 666),
        ({"SYNCD_STRIPE_SWEEP_WORKERS": "8"}, 250),  # automatic: 2,000 objects in flight at most
        ({"SYNCD_STRIPE_SWEEP_WORKERS": "3", "SYNCD_STRIPE_SWEEP_PAGE_SIZE": "600"}, 600),
        # SQLite applies one page at a time: any size within bounds
        ({"SYNCD_STRIPE_SWEEP_WORKERS": "8", "SYNCD_STRIPE_SWEEP_PAGE_SIZE": "1000"}, 1000),
    ],
)
def test_sweep_page_size_keeps_the_pages_in_flight_bounded(
    tmp_path: Path, env: dict[str, str], page: int
) -> None:
    settings = load_settings(write(tmp_path, ""), environ=env)
    assert settings.stripe.sweep_page() == page
