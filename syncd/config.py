"""Settings: loaded once at start, frozen, passed down explicitly.

Precedence, highest first: ``SYNCD_*`` environment variables, the file given with
``--config`` (or ``SYNCD_CONFIG``), ``config/syncd.toml``, built-in defaults.
``SYNCD_<SECTION>_<KEY>`` overrides ``[section] key`` (``SYNCD_DATABASE_URL`` ->
``[database] url``). Secrets are accepted only from the environment and are held as
``SecretStr`` so they never reach a repr or a log line.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from pydantic import SecretStr
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from .exceptions import ConfigError

ENV_PREFIX = "SYNCD_"
DEFAULT_CONFIG = Path("config/syncd.toml")
# Pinned Stripe API version: payload shapes never drift with an SDK upgrade.
STRIPE_API_VERSION = "2026-10-28.endive"


@dataclass(frozen=True, slots=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1  # >1: a supervisor process and N serving processes on one socket
    max_body_bytes: int = 1_048_576
    shutdown_grace_s: float = 20.0


@dataclass(frozen=True, slots=True)
class DatabaseSettings:
    url: SecretStr | None = None  # None: a SQLite file in data_dir
    pool_size: int = 10


@dataclass(frozen=True, slots=True)
class RedisSettings:
    url: SecretStr | None = None  # set to enable the Redis adapter
    key_prefix: str = "schematic"


# Sweep pages applied at once x their size: at two advisory locks an object, 4,000 of the
# 6,400 slots of a default Postgres lock table (which also holds every transaction's table
# locks), the rest left to the applier and the API.
SWEEP_OBJECTS_IN_FLIGHT = 2_000
SWEEP_PAGE_SIZE = 1_000


def automatic_page_size(workers: int) -> int:
    """Objects per sweep transaction for ``workers`` threads when none is configured: 1,000,
    or what keeps their pages within ``SWEEP_OBJECTS_IN_FLIGHT``."""
    return min(SWEEP_PAGE_SIZE, SWEEP_OBJECTS_IN_FLIGHT // max(1, workers))


@dataclass(frozen=True, slots=True)
class StripeSettings:
    api_key: SecretStr | None = None  # None: use the built-in Stripe emulator
    api_base: str | None = None
    webhook_secret: SecretStr | None = None  # comma-separated for rotation
    api_version: str = STRIPE_API_VERSION
    webhook_tolerance_s: int = 300
    max_network_retries: int = 2
    requests_per_second: float = 0.0  # 0: 20/s live keys, 10/s test keys
    past_due_grace_days: int = 0
    emulator_port: int = 12111
    # Object kinds re-fetched from Stripe before an event is applied (comma-separated).
    refetch: str = "subscription,subscription_schedule"
    events_overlap_s: int = 600  # Events API replay re-reads this far behind its cursor
    # Where webhooks are applied: "process" (a child process of the serving daemon; Postgres
    # only), "thread" (in the serving process), "auto" (process on Postgres, else thread).
    applier: str = "auto"
    # Threads applying a sweep's pages (Postgres; SQLite applies them one at a time).
    sweep_workers: int = 2
    # Listed objects per sweep transaction (each holds up to two advisory locks per object);
    # 0: 1,000, or fewer with more than two workers (see sweep_page).
    sweep_page_size: int = 0
    # syncd -> Stripe: push the catalog (and migrated subscriptions) on a schedule; off by
    # default so an operator decides when Stripe's catalog starts following syncd's.
    push_catalog: bool = False
    push_interval_s: float = 300.0

    def sweep_page(self) -> int:
        """Objects per sweep transaction: ``sweep_page_size``, else 1,000 or what keeps the
        workers' pages within ``SWEEP_OBJECTS_IN_FLIGHT``."""
        return self.sweep_page_size or automatic_page_size(self.sweep_workers)


@dataclass(frozen=True, slots=True)
class CatalogSettings:
    path: str | None = "config/catalog.toml"  # applied at start when set


@dataclass(frozen=True, slots=True)
class LogSettings:
    level: str = "info"
    format: str = "auto"  # auto | json | console


@dataclass(frozen=True, slots=True)
class SchedulerSettings:
    enabled: bool = True
    inbox_interval_s: float = 1.0
    events_replay_interval_s: float = 60.0
    reconcile_cron_hour: int = 3
    outbox_interval_s: float = 1.0
    usage_flush_interval_s: float = 30.0
    publish_interval_s: float = 0.2  # the publish job's poll: a safety net, commits wake adapters
    publish_min_gap_s: float = 0.01  # at least this between two runs of one adapter woken by commits
    # Leadership (Postgres): the leader renews its lease every lease_renew_s; a dead leader's
    # lease runs out after lease_ttl_s and a follower takes over on its next renewal.
    lease_ttl_s: float = 15.0
    lease_renew_s: float = 5.0
    heartbeat_interval_s: float = 60.0  # the cluster heartbeat job (a scheduler_run row per tick)
    follow_interval_s: float = 2.0  # how often change_log is followed (audiences, boundary re-arm)
    boundary_max_sleep_s: float = 300.0  # the boundary job re-checks at least this often
    audience_interval_s: float = 3600.0  # full plan-audience re-evaluation


@dataclass(frozen=True, slots=True)
class Settings:
    data_dir: str = "data"
    server: ServerSettings = field(default_factory=ServerSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    redis: RedisSettings = field(default_factory=RedisSettings)
    stripe: StripeSettings = field(default_factory=StripeSettings)
    catalog: CatalogSettings = field(default_factory=CatalogSettings)
    log: LogSettings = field(default_factory=LogSettings)
    scheduler: SchedulerSettings = field(default_factory=SchedulerSettings)
    plugins: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def database_url(self) -> str:
        """The effective SQLAlchemy URL (secret: do not log)."""
        if self.database.url is not None:
            return normalize_database_url(self.database.url.get_secret_value())
        return f"sqlite:///{Path(self.data_dir) / 'syncd.db'}"

    @property
    def uses_stripe_emulator(self) -> bool:
        return self.stripe.api_key is None

    def plugin_config(self, name: str) -> Mapping[str, Any]:
        return self.plugins.get(name, {})


SECRET_FIELDS = {
    ("stripe", "api_key"),
    ("stripe", "webhook_secret"),
    ("database", "url"),
    ("redis", "url"),
}
_SECTIONS: dict[str, type[Any]] = {
    f.name: get_type_hints(Settings)[f.name]
    for f in dataclasses.fields(Settings)
    if dataclasses.is_dataclass(get_type_hints(Settings)[f.name])
}
_TOP_LEVEL = {"data_dir"}
_LOG_LEVELS = {"debug", "info", "warning", "error", "critical"}


def normalize_database_url(url: str) -> str:
    """Map the common Postgres spellings onto the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def load_settings(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Build the frozen settings from defaults, TOML file(s) and the environment."""
    env = os.environ if environ is None else environ
    raw: dict[str, dict[str, Any]] = {}
    top: dict[str, Any] = {}
    plugins: dict[str, Mapping[str, Any]] = {}
    explicit = path or env.get(f"{ENV_PREFIX}CONFIG")
    config_path = Path(explicit) if explicit else DEFAULT_CONFIG
    if explicit and not config_path.is_file():
        raise ConfigError(
            "--config", f"file {str(config_path)!r} does not exist", "pass an existing TOML file"
        )
    if config_path.is_file():
        _merge_file(config_path, raw, top, plugins)
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name == f"{ENV_PREFIX}CONFIG":
            continue
        _apply_env(name, value, raw, top)
    sections = {name: _build_section(name, cls, raw.get(name, {})) for name, cls in _SECTIONS.items()}
    settings = Settings(plugins=plugins, **top, **sections)
    _validate(settings)
    return settings


def _merge_file(
    path: Path, raw: dict[str, dict[str, Any]], top: dict[str, Any], plugins: dict[str, Mapping[str, Any]]
) -> None:
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), f"is not valid TOML ({exc})", "correct the file syntax") from exc
    for key, value in data.items():
        if key == "plugins" and isinstance(value, dict):
            plugins.update({k: dict(v) for k, v in value.items() if isinstance(v, dict)})
        elif key in _TOP_LEVEL:
            top[key] = value
        elif key in _SECTIONS and isinstance(value, dict):
            for sub, subvalue in value.items():
                if (key, sub) in SECRET_FIELDS:
                    env_name = f"{ENV_PREFIX}{key}_{sub}".upper()
                    raise ConfigError(
                        f"[{key}] {sub}",
                        "secrets may not be stored in a config file",
                        f"remove it from {path} and set {env_name} in the environment",
                    )
                raw.setdefault(key, {})[sub] = subvalue
        else:
            raise ConfigError(
                f"{path}: [{key}]",
                "unknown configuration section or key",
                f"use one of: {', '.join(sorted([*_SECTIONS, *_TOP_LEVEL, 'plugins']))}",
            )


def _apply_env(name: str, value: str, raw: dict[str, dict[str, Any]], top: dict[str, Any]) -> None:
    rest = name[len(ENV_PREFIX) :].lower()
    if rest in _TOP_LEVEL:
        top[rest] = value
        return
    section, _, key = rest.partition("_")
    if section in _SECTIONS and key:
        raw.setdefault(section, {})[key] = value
    # Other SYNCD_* variables (e.g. plugin-specific ones) are left to their owners.


def _build_section(section: str, cls: type[Any], values: Mapping[str, Any]) -> Any:
    hints = get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"[{section}] {key}", "unknown key", f"use one of: {', '.join(sorted(known))}")
        kwargs[key] = _coerce(f"{section}.{key}", hints[key], value)
    return cls(**kwargs)


def _coerce(key: str, hint: Any, value: Any) -> Any:
    env_name = ENV_PREFIX + key.replace(".", "_").upper()
    if value in ("", None) and _is_optional(hint):
        return None
    base = _strip_optional(hint)
    try:
        if base is SecretStr:
            return SecretStr(str(value))
        if base is bool:
            if isinstance(value, bool):
                return value
            lowered = str(value).strip().lower()
            if lowered in {"1", "true", "yes", "on"}:
                return True
            if lowered in {"0", "false", "no", "off"}:
                return False
            raise ValueError(value)
        if base is int:
            if isinstance(value, bool):
                raise ValueError(value)
            return int(value)
        if base is float:
            return float(value)
        if base is str:
            return str(value)
    except ValueError:
        pass
    else:
        return value
    expected = {bool: "true or false", int: "an integer", float: "a number"}.get(base, "a string")
    raise ConfigError(
        key,
        f"expected {expected}, got {value!r}",
        f"set {env_name} (or [{key.split('.')[0]}] {key.split('.')[1]}) to {expected}",
    )


def _is_optional(hint: Any) -> bool:
    return type(None) in getattr(hint, "__args__", ())


def _strip_optional(hint: Any) -> Any:
    args = [a for a in getattr(hint, "__args__", ()) if a is not type(None)]
    return args[0] if args else hint


def _validate(settings: Settings) -> None:
    s = settings
    if not 1 <= s.server.port <= 65535:
        raise ConfigError(
            "server.port", f"{s.server.port} is not a TCP port", "use 1-65535 (SYNCD_SERVER_PORT)"
        )
    if s.server.workers < 1:
        raise ConfigError("server.workers", "must be at least 1", "set SYNCD_SERVER_WORKERS to 1 or more")
    if s.log.level.lower() not in _LOG_LEVELS:
        raise ConfigError("log.level", f"unknown level {s.log.level!r}", f"use one of {sorted(_LOG_LEVELS)}")
    if s.log.format not in {"auto", "json", "console"}:
        raise ConfigError("log.format", f"unknown format {s.log.format!r}", "use auto, json or console")
    if s.stripe.webhook_tolerance_s <= 0:
        raise ConfigError("stripe.webhook_tolerance_s", "must be positive", "use e.g. 300")
    try:
        make_url(s.database_url)
    except ArgumentError as exc:
        raise ConfigError(
            "database.url",
            "is not a database URL",
            "set SYNCD_DATABASE_URL to e.g. sqlite:///data/syncd.db or postgresql://user@host/db",
        ) from exc
    if s.stripe.applier not in {"auto", "process", "thread"}:
        raise ConfigError(
            "stripe.applier", f"unknown applier {s.stripe.applier!r}", "use auto, process or thread"
        )
    if s.stripe.applier == "process" and not s.database_url.startswith("postgresql"):
        raise ConfigError(
            "stripe.applier",
            "process needs Postgres (it is woken by LISTEN/NOTIFY)",
            "use auto or thread with SQLite",
        )
    if not 1 <= s.stripe.sweep_workers <= 8:
        raise ConfigError(
            "stripe.sweep_workers", f"must be 1 to 8, not {s.stripe.sweep_workers}", "2 suits most hosts"
        )
    page = s.stripe.sweep_page_size
    if page and not 50 <= page <= 1000:
        raise ConfigError(
            "stripe.sweep_page_size", f"must be 0 (automatic) or 50 to 1000, not {page}", "0 suits most hosts"
        )
    in_flight = page * s.stripe.sweep_workers
    if in_flight > SWEEP_OBJECTS_IN_FLIGHT and s.database_url.startswith("postgresql"):
        raise ConfigError(
            "stripe.sweep_page_size",
            f"{s.stripe.sweep_workers} workers x {page} objects is above {SWEEP_OBJECTS_IN_FLIGHT:,}"
            " objects in flight: their advisory locks (up to two per object) would crowd Postgres's"
            " shared lock table (max_locks_per_transaction x max_connections, 6,400 by default)",
            "lower stripe.sweep_page_size or stripe.sweep_workers, or leave the size at 0 (automatic)",
        )
    sch = s.scheduler
    if not 0 <= sch.publish_min_gap_s <= sch.publish_interval_s:
        raise ConfigError(
            "scheduler.publish_min_gap_s",
            f"must be between 0 and publish_interval_s ({sch.publish_interval_s})",
            "e.g. publish_min_gap_s = 0.01: a run at most every 10 ms per adapter",
        )
    if not 0 < sch.lease_renew_s < sch.lease_ttl_s:
        raise ConfigError(
            "scheduler.lease_renew_s",
            f"must be positive and below lease_ttl_s ({sch.lease_ttl_s})",
            "renew well within the lease, e.g. lease_ttl_s = 15 and lease_renew_s = 5",
        )
    key = s.stripe.api_key.get_secret_value() if s.stripe.api_key else None
    if key is not None and not key.startswith(("sk_", "rk_")):
        raise ConfigError(
            "stripe.api_key",
            "does not look like a Stripe secret or restricted key",
            "set SYNCD_STRIPE_API_KEY to an sk_... or rk_... key, or unset it for the emulator",
        )


def masked(settings: Settings) -> dict[str, Any]:
    """The effective configuration as plain data, secrets masked (for `syncd config check`)."""
    out: dict[str, Any] = {"data_dir": settings.data_dir}
    for section in _SECTIONS:
        obj = getattr(settings, section)
        values: dict[str, Any] = {}
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if isinstance(value, SecretStr):
                value = _mask_url(value.get_secret_value()) if f.name == "url" else "**********"
            values[f.name] = value
        out[section] = values
    out["database"]["effective_url"] = _mask_url(settings.database_url)
    out["stripe"]["mode"] = "emulator" if settings.uses_stripe_emulator else "stripe"
    out["plugins"] = {k: dict(v) for k, v in settings.plugins.items()}
    return out


def _mask_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "**********"
