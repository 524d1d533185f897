"""The plugin manager: built-in plugins first, then the ``nlptasks`` entry points.

Plugins are loaded lazily, on the first call to :func:`get_plugin_manager`, never at import, so
one broken plugin cannot take down ``nlptasks --help``. Each entry point loads in its own
``try``; a failure is one warning line naming the plugin, its distribution and version.

Environment:
    NLPTASKS_LOAD_PLUGINS: comma-separated allow-list of entry-point names (empty: none).
    NLPTASKS_STRICT_PLUGINS: ``1`` turns plugin load failures into errors (for plugin authors).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import warnings
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pluggy

from nlptasks import hookspecs
from nlptasks.errors import NlpTasksError, PluginError

ENTRY_POINT_GROUP = "nlptasks"

# Built-in features are plugins too, registered through the same manager as third-party ones.
DEFAULT_PLUGINS: tuple[str, ...] = ("nlptasks.builtins.sentiment",)


@dataclass(frozen=True)
class PluginInfo:
    """Where a loaded plugin came from (our own map: pluggy's internals stay private)."""

    name: str
    distribution: str | None = None
    version: str | None = None
    builtin: bool = False
    hooks: tuple[str, ...] = field(default=())


class PluginLoadWarning(UserWarning):
    """A plugin that failed to load and was skipped."""


_manager: pluggy.PluginManager | None = None
_infos: dict[str, PluginInfo] = {}
_generation = 0


def get_plugin_manager() -> pluggy.PluginManager:
    """Return the plugin manager, loading plugins on first use."""
    global _manager
    if _manager is None:
        _manager = _load()
    return _manager


def plugin_infos() -> list[PluginInfo]:
    """Describe every loaded plugin, built-ins first."""
    pm = get_plugin_manager()
    infos = []
    for name, info in _infos.items():
        plugin = pm.get_plugin(name)
        if plugin is None:
            continue
        hooks = tuple(sorted(h.name for h in pm.get_hookcallers(plugin) or ()))
        infos.append(PluginInfo(info.name, info.distribution, info.version, info.builtin, hooks))
    return infos


def generation() -> int:
    """A counter that changes whenever the set of plugins changes (registries use it)."""
    return _generation


def register_plugin(plugin: object, name: str, distribution: str | None = None) -> None:
    """Register a plugin object (a module or instance) by hand, e.g. from a test fixture."""
    global _generation
    pm = get_plugin_manager()
    pm.register(plugin, name=name)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError:
        pm.unregister(plugin, name=name)  # leave the manager as it was
        raise
    _infos[name] = PluginInfo(name, distribution)
    _generation += 1


def unregister_plugin(name: str) -> None:
    """Remove a plugin registered with :func:`register_plugin`."""
    global _generation
    pm = get_plugin_manager()
    plugin = pm.get_plugin(name)
    if plugin is not None:
        pm.unregister(plugin, name=name)
    _infos.pop(name, None)
    _generation += 1


def reset() -> None:
    """Forget all plugins; the next use loads them again (reads the environment anew)."""
    global _manager, _generation
    _manager = None
    _infos.clear()
    _generation += 1


def _load() -> pluggy.PluginManager:
    global _generation
    pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
    pm.add_hookspecs(hookspecs)
    if os.environ.get("NLPTASKS_TRACE_PLUGINS"):
        pm.trace.root.setwriter(print)
        pm.enable_tracing()
    for module_name in DEFAULT_PLUGINS:
        module = importlib.import_module(module_name)
        # Short names ("sentiment") read well in `nlptasks list`; the module path does not.
        name = module_name.rsplit(".", 1)[-1]
        pm.register(module, name=name)
        _infos[name] = PluginInfo(name, "nlptasks", _own_version(), builtin=True)
    _load_entry_points(pm)
    # A misspelled hook name in a plugin would otherwise be ignored silently.
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"{exc} Fix the hook name (see 'nlptasks plugins --all').") from exc
    _generation += 1
    return pm


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    allow = os.environ.get("NLPTASKS_LOAD_PLUGINS")
    allowed = None if allow is None else {n.strip() for n in allow.split(",") if n.strip()}
    strict = strict_mode()
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if allowed is not None and ep.name not in allowed:
            continue
        dist = ep.dist.name if ep.dist else None
        version = ep.dist.version if ep.dist else None
        where = f"({dist or 'unknown distribution'} {version or ''})".replace(" )", ")")
        if pm.has_plugin(ep.name):
            # Never let a newcomer displace a plugin already loaded under that name.
            taken_by = _infos.get(ep.name)
            owner = taken_by.distribution if taken_by else "another plugin"
            _report(
                f"Plugin '{ep.name}' {where} was skipped: the name is already used by {owner}. "
                f"Rename its entry point.",
                strict,
            )
            continue
        plugin: ModuleType | None = None
        try:
            plugin = ep.load()
            pm.register(plugin, name=ep.name)
            pm.check_pending()
        except Exception as exc:
            if plugin is not None and pm.get_plugin(ep.name) is plugin:
                pm.unregister(plugin, name=ep.name)
            _report(
                f"Plugin '{ep.name}' {where} failed to load and was skipped: "
                f"{type(exc).__name__}: {exc}",
                strict,
                exc,
            )
            continue
        _infos[ep.name] = PluginInfo(ep.name, dist, version)


def strict_mode() -> bool:
    """True when NLPTASKS_STRICT_PLUGINS asks for plugin problems to be errors."""
    return os.environ.get("NLPTASKS_STRICT_PLUGINS", "") not in ("", "0")


def _report(message: str, strict: bool, exc: BaseException | None = None) -> None:
    if strict:
        raise PluginError(message) from exc
    warnings.warn(message, PluginLoadWarning, stacklevel=3)


def report_hook_failure(plugin_name: str, hook: str, exc: BaseException) -> None:
    """A plugin's hook raised: one warning line naming it (an error in strict mode)."""
    info = _infos.get(plugin_name)
    where = ""
    if info is not None and info.distribution:
        where = (
            f" ({info.distribution} {info.version})" if info.version else f" ({info.distribution})"
        )
    _report(
        f"Plugin '{plugin_name}'{where} failed in hook {hook} and was skipped there: "
        f"{type(exc).__name__}: {exc}",
        strict_mode(),
        exc,
    )


def call_each(hook_name: str, **kwargs: Any) -> None:
    """Call every implementation of a hook, each in its own ``try``: one plugin's failure is
    reported (see :func:`report_hook_failure`) and never stops the others or the CLI."""
    pm = get_plugin_manager()
    for impl in getattr(pm.hook, hook_name).get_hookimpls():
        try:
            impl.function(**{name: kwargs[name] for name in impl.argnames})
        except NlpTasksError:
            raise  # our own errors (e.g. a duplicate name) already say what to do
        except Exception as exc:
            report_hook_failure(impl.plugin_name, hook_name, exc)


def _own_version() -> str:
    from nlptasks import __version__

    return __version__
