"""The webhook adapter's settings: ``[plugins.webhook]`` in the config file.

``enabled`` (the adapter on or off) and the publish pump's ``retry_*`` keys live in the
same section and are left to their owners.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..config import Settings
from ..exceptions import ConfigError

SCHEMES = ("standard", "schematic", "both")
# Keys of the same section read by the plugin system and the publish pump, not by us.
_PLUGIN_KEYS = ("enabled", "retry_initial_s", "retry_max_s")


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    deliver: bool = True  # run the delivery worker in this daemon (false: only enqueue)
    signature: str = "standard"  # default scheme; endpoints may override (standard|schematic|both)
    max_attempts: int = 6  # Schematic's policy: the first try plus up to 5 retries
    backoff_initial_s: float = 30.0
    backoff_max_s: float = 3600.0
    timeout_s: float = 10.0
    concurrency: int = 16  # requests in flight per worker (threads; each sends one run at a time)
    batch_size: int = 500  # deliveries claimed per round
    poll_interval_s: float = 1.0
    claim_ttl_s: float = 120.0  # a crashed worker's claimed rows are retaken after this
    disable_after_s: float = 86400.0  # failing without a success this long disables (0: never)
    disable_after_dead: int = 25  # this many dead letters in a row disable (0: never)


def webhook_settings(settings: Settings) -> WebhookSettings:
    return parse(settings.plugin_config("webhook"))


def parse(raw: Mapping[str, Any]) -> WebhookSettings:
    fields = {f.name: f for f in dataclasses.fields(WebhookSettings)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        where = f"[plugins.webhook] {key}"
        if key in _PLUGIN_KEYS:
            continue
        if key not in fields:
            known = sorted([*fields, *_PLUGIN_KEYS])
            raise ConfigError(where, "unknown key", f"use one of: {', '.join(known)}")
        default = fields[key].default
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise ConfigError(where, f"expected true or false, got {value!r}", "use true or false")
        elif isinstance(default, int | float):
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ConfigError(where, f"expected a number >= 0, got {value!r}", "use e.g. " + str(default))
            if isinstance(default, int) and not isinstance(value, int):
                raise ConfigError(where, f"expected an integer, got {value!r}", "use e.g. " + str(default))
        values[key] = value
    parsed = WebhookSettings(**values)
    if parsed.signature not in SCHEMES:
        raise ConfigError(
            "[plugins.webhook] signature", f"unknown scheme {parsed.signature!r}", f"use one of {SCHEMES}"
        )
    for key in ("max_attempts", "concurrency", "batch_size"):
        if getattr(parsed, key) < 1:
            raise ConfigError(f"[plugins.webhook] {key}", "must be at least 1", "use e.g. 1 or more")
    if parsed.timeout_s <= 0 or parsed.poll_interval_s <= 0 or parsed.claim_ttl_s <= parsed.timeout_s:
        raise ConfigError(
            "[plugins.webhook]",
            "timeout_s and poll_interval_s must be positive, and claim_ttl_s longer than timeout_s",
            "use e.g. timeout_s = 10, poll_interval_s = 1, claim_ttl_s = 120",
        )
    return parsed
