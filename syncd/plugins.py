"""The plugin system: one pluggy ``PluginManager`` per daemon.

Built-in behaviour is registered through the same manager as third-party adapters, so
there is one way to extend syncd. Adapters come from the ``syncd.adapters`` entry-point
group and are registered under their entry-point name; only the enabled ones are imported.
An adapter is enabled by ``[plugins.<name>] enabled = true`` (the Redis adapter also by
``[redis] url`` unless ``enabled = false``).

An entry point names a module or object holding ``@hookimpl`` functions. If it has a
``make_plugin(config, settings)`` callable, the object that returns is registered instead,
which lets an adapter keep per-daemon state (connections) instead of module globals.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import pluggy
import structlog

from . import hookspecs
from .config import Settings
from .exceptions import StartupError

log = structlog.get_logger(__name__)

ENTRY_POINT_GROUP = "syncd.adapters"
BUILTIN = "syncd.builtin"  # name of the built-in plugin (logs and counts published changes)
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True, slots=True)
class AdapterInfo:
    """One installed adapter, as ``syncd plugins`` lists it."""

    name: str
    module: str
    distribution: str | None
    version: str | None
    enabled: bool


def is_enabled(name: str, settings: Settings) -> bool:
    """Whether the adapter ``name`` is switched on by configuration."""
    value = settings.plugin_config(name).get("enabled")
    if value is None:
        return name == "redis" and settings.redis.url is not None
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE | _FALSE:
        return text in _TRUE
    raise StartupError(f"[plugins.{name}] enabled: expected true or false, got {value!r}")


def installed_adapters(settings: Settings) -> list[AdapterInfo]:
    rows = []
    for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        dist = ep.dist
        rows.append(
            AdapterInfo(
                name=ep.name,
                module=ep.value,
                distribution=dist.name if dist else None,
                version=dist.version if dist else None,
                enabled=is_enabled(ep.name, settings),
            )
        )
    return rows


class BuiltinPlugin:
    """Built-in behaviour, registered like any adapter: a debug log line per published batch.

    It implements ``syncd_publish`` so it follows the change log with its own cursor, which
    makes the change log's own progress visible in the per-adapter lag metrics.
    """

    @hookspecs.hookimpl
    def syncd_publish(self, changes: list[hookspecs.Change]) -> None:
        if changes:
            log.debug("changes_published", first=changes[0].seq, last=changes[-1].seq, count=len(changes))


class Plugins:
    """The daemon's plugin manager and the names of the adapters it loaded."""

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.pm = pm

    @classmethod
    def load(
        cls,
        settings: Settings,
        *,
        extra: Mapping[str, object] | None = None,
        entry_points: Iterable[metadata.EntryPoint] | None = None,
    ) -> Plugins:
        """Build the manager: built-ins, enabled entry-point adapters, then ``extra`` (tests, embedders).

        Raises StartupError when an enabled adapter is missing or broken, or a plugin
        implements a hook syncd does not define.
        """
        pm = pluggy.PluginManager(hookspecs.PROJECT)
        pm.add_hookspecs(hookspecs)
        _register(pm, BUILTIN, BuiltinPlugin())
        found = {ep.name: ep for ep in (entry_points or metadata.entry_points(group=ENTRY_POINT_GROUP))}
        for name in sorted(settings.plugins):
            if name not in found and is_enabled(name, settings):
                raise StartupError(
                    f"[plugins.{name}] is enabled but no adapter named {name!r} is installed "
                    f"(installed: {', '.join(sorted(found)) or 'none'})"
                )
        for name, ep in sorted(found.items()):
            if is_enabled(name, settings):
                _register(pm, name, _instantiate(name, ep.load, settings))
        for name, plugin in (extra or {}).items():
            _register(pm, name, plugin)
        try:
            pm.check_pending()
        except pluggy.PluginValidationError as exc:
            culprit = pm.get_name(exc.plugin)
            raise StartupError(f"plugin {culprit!r}: {_unknown_hook_message(exc)}") from exc
        log.info("plugins_loaded", plugins=sorted(cls(pm).names()))
        return cls(pm)

    def names(self) -> list[str]:
        return [name for name, _ in self.pm.list_name_plugin()]

    def publishers(self) -> list[str]:
        """Names of the plugins implementing ``syncd_publish``, in registration order."""
        return [impl.plugin_name for impl in self.pm.hook.syncd_publish.get_hookimpls()]

    def implementers(self, hook: str) -> list[str]:
        return [impl.plugin_name for impl in getattr(self.pm.hook, hook).get_hookimpls()]

    def caller(self, hook: str, name: str) -> Callable[..., Any]:
        """A caller of ``hook`` restricted to the one plugin ``name`` (adapters never see each other)."""
        plugin = self.pm.get_plugin(name)
        others = [p for n, p in self.pm.list_name_plugin() if n != name and p is not plugin]
        return self.pm.subset_hook_caller(hook, remove_plugins=others)


def _instantiate(name: str, load: Callable[[], Any], settings: Settings) -> object:
    try:
        target = load()
        factory = getattr(target, "make_plugin", None)
        return factory(settings.plugin_config(name), settings) if callable(factory) else target
    except StartupError:
        raise
    except Exception as exc:
        raise StartupError(f"adapter {name!r} failed to load: {type(exc).__name__}: {exc}") from exc


def _register(pm: pluggy.PluginManager, name: str, plugin: object) -> None:
    try:
        pm.register(plugin, name=name)
    except pluggy.PluginValidationError as exc:
        raise StartupError(f"plugin {name!r}: {exc}") from exc
    except ValueError as exc:  # pluggy: the same name or object twice
        raise StartupError(f"plugin {name!r} could not be registered: {exc}") from exc


def _unknown_hook_message(exc: pluggy.PluginValidationError) -> str:
    known = ", ".join(sorted(n for n in dir(hookspecs) if n.startswith("syncd_")))
    hook = str(exc).split("'")[1] if str(exc).count("'") >= 2 else str(exc)
    return f"implements unknown hook {hook!r}; syncd defines only: {known}"
