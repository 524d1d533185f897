"""The plugin manager: built-in plugins first, then the ``nlptasks`` entry points.

Plugins are loaded lazily, on the first call to :func:`get_plugin_manager`, never at import, so
one broken plugin cannot take down ``nlptasks --help``. Each entry point loads in its own
``try``; a failure is one warning line naming the plugin, its distribution and version.

Every hook is called through :func:`call_hook`, in pluggy's order, each implementation in
its own ``try``.

Environment:
    NLPTASKS_LOAD_PLUGINS: comma-separated allow-list of entry-point names (empty: none).
    NLPTASKS_STRICT_PLUGINS: ``1`` turns plugin load failures into errors (for plugin authors).
    NLPTASKS_TRACE_PLUGINS: ``1`` writes one line per hook implementation call to stderr.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import os
import sys
import time
import warnings
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pluggy

from nlptasks.errors import NlpTasksError, PluginError
from nlptasks.plugins import hookspecs

ENTRY_POINT_GROUP = "nlptasks"

# Built-in features are plugins too, registered through the same manager as third-party ones.
DEFAULT_PLUGINS: tuple[str, ...] = (
    "nlptasks.builtins.sentiment",
    "nlptasks.builtins.qa",
    "nlptasks.builtins.generation",
    "nlptasks.builtins.translation",
    "nlptasks.probes",
)


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


@dataclass(frozen=True)
class _Isolation:
    """What an isolated manager holds instead of the built-ins and entry points."""

    plugins: tuple[tuple[str, object, str | None, str | None], ...]
    """(name, plugin, distribution, version) of each plugin under test."""
    builtins: bool


@dataclass
class PluginState:
    """Everything nlptasks knows about its plugins, in one object: the pluggy manager (made
    on first use), where each plugin came from, what an isolated manager holds, and what is
    built from the plugins (the registries), which is dropped whenever the plugins change."""

    isolation: _Isolation | None = None
    manager: pluggy.PluginManager | None = None
    infos: dict[str, PluginInfo] = field(default_factory=dict)
    derived: dict[str, Any] = field(default_factory=dict)
    """Built from the plugins and valid while they stay the same (``get_registries``)."""

    def changed(self) -> None:
        self.derived.clear()


_state = PluginState()


def state() -> PluginState:
    """The current plugin state, its manager loaded."""
    get_plugin_manager()
    return _state


def get_plugin_manager() -> pluggy.PluginManager:
    """Return the plugin manager, loading plugins on first use."""
    if _state.manager is None:
        _state.manager = _load(_state)
        _state.changed()
    return _state.manager


def plugin_infos() -> list[PluginInfo]:
    """Describe every loaded plugin, built-ins first."""
    pm = get_plugin_manager()
    infos = []
    for name, info in _state.infos.items():
        plugin = pm.get_plugin(name)
        if plugin is None:
            continue
        hooks = tuple(sorted(h.name for h in pm.get_hookcallers(plugin) or ()))
        infos.append(PluginInfo(info.name, info.distribution, info.version, info.builtin, hooks))
    return infos


def register_plugin(plugin: object, name: str, distribution: str | None = None) -> None:
    """Register a plugin object (a module or instance) by hand, e.g. from a test fixture."""
    pm = get_plugin_manager()
    pm.register(plugin, name=name)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError:
        pm.unregister(plugin, name=name)  # leave the manager as it was
        raise
    _state.infos[name] = PluginInfo(name, distribution)
    _state.changed()


def unregister_plugin(name: str) -> None:
    """Remove a plugin registered with :func:`register_plugin`."""
    pm = get_plugin_manager()
    plugin = pm.get_plugin(name)
    if plugin is not None:
        pm.unregister(plugin, name=name)
    _state.infos.pop(name, None)
    _state.changed()


def reset() -> None:
    """Forget all plugins; the next use loads them again (reads the environment anew)."""
    global _state
    _state = PluginState(isolation=_state.isolation)


@contextlib.contextmanager
def isolated(
    plugins: Sequence[object | str] = (), builtins: bool = False
) -> Iterator[pluggy.PluginManager]:
    """A plugin manager that holds only ``plugins`` (and the built-ins when ``builtins``),
    whatever else is installed; the usual manager comes back afterwards.

    Each plugin is a module or object, or a string: the name of an installed ``nlptasks``
    entry point (loaded as users get it), else a module's import path. A plugin under test
    that is itself a built-in (``"nlptasks.builtins.qa"``) needs no ``builtins=True``.
    """
    global _state
    resolved = tuple(_resolve(plugin) for plugin in plugins)
    # The state of before comes back as it was (plugins registered by hand included).
    previous = _state
    _state = PluginState(isolation=_Isolation(resolved, builtins))
    try:
        yield get_plugin_manager()
    finally:
        _state = previous


def _resolve(plugin: object | str) -> tuple[str, object, str | None, str | None]:
    if not isinstance(plugin, str):
        name = getattr(plugin, "__name__", type(plugin).__name__)
        return name.rsplit(".", 1)[-1], plugin, None, None
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP, name=plugin):
        dist = ep.dist
        name, version = (dist.name, dist.version) if dist else (None, None)
        try:
            loaded = ep.load()
        except Exception as exc:
            raise PluginError(
                f"Plugin '{plugin}' ({name or 'unknown distribution'} {version or ''}) failed "
                f"to load: {type(exc).__name__}: {exc}"
            ) from exc
        return ep.name, loaded, name, version
    try:
        module = importlib.import_module(plugin)
    except ModuleNotFoundError as exc:
        if exc.name is None or not (plugin == exc.name or plugin.startswith(exc.name + ".")):
            raise PluginError(
                f"Plugin module '{plugin}' failed to import: {type(exc).__name__}: {exc}"
            ) from exc
        raise PluginError(
            f"Plugin '{plugin}' is neither an installed nlptasks entry point nor an importable "
            f"module. Install its package (pip install -e .) or fix the name."
        ) from exc
    except Exception as exc:
        raise PluginError(
            f"Plugin module '{plugin}' failed to import: {type(exc).__name__}: {exc}"
        ) from exc
    builtin = plugin in DEFAULT_PLUGINS
    return plugin.rsplit(".", 1)[-1], module, "nlptasks" if builtin else None, None


def _load(state: PluginState) -> pluggy.PluginManager:
    pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
    pm.add_hookspecs(hookspecs)
    # No pm.enable_tracing(): pluggy's tracer only sees pm.hook.X() calls, which nlptasks
    # never makes; call_hook traces each implementation itself (to stderr, see there).
    isolation, infos = state.isolation, state.infos
    infos.clear()  # a load that failed before (strict mode) may have left some
    under_test = {id(p[1]) for p in isolation.plugins} if isolation else set()
    if isolation is None or isolation.builtins:
        for module_name in DEFAULT_PLUGINS:
            module = importlib.import_module(module_name)
            if id(module) in under_test:
                continue  # registered below, as the plugin under test
            # Short names ("sentiment") read well in `nlptasks list`; the module path does not.
            name = module_name.rsplit(".", 1)[-1]
            pm.register(module, name=name)
            infos[name] = PluginInfo(name, "nlptasks", _own_version(), builtin=True)
    if isolation is None:
        _load_entry_points(pm, infos)
    else:
        for name, plugin, dist, version in isolation.plugins:
            if pm.has_plugin(name):
                taken = infos.get(name)
                other = "a built-in" if taken and taken.builtin else "another plugin under test"
                raise PluginError(
                    f"Two plugins would both be named '{name}' (a plugin under test and "
                    f"{other}). Give isolated() the plugin's entry-point name, or rename its "
                    f"module."
                )
            pm.register(plugin, name=name)
            builtin = dist == "nlptasks"
            infos[name] = PluginInfo(
                name, dist, version or (_own_version() if builtin else None), builtin
            )
    # A misspelled hook name in a plugin would otherwise be ignored silently.
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"{exc} Fix the hook name (see 'nlptasks plugins --all').") from exc
    return pm


def _load_entry_points(pm: pluggy.PluginManager, infos: dict[str, PluginInfo]) -> None:
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
            taken_by = infos.get(ep.name)
            owner = taken_by.distribution if taken_by else "another plugin"
            problem = f"the name is already used by {owner}. Rename its entry point."
            _report(
                f"Plugin '{ep.name}' {where} was skipped: {problem}",
                f"Plugin '{ep.name}' {where} cannot be loaded: {problem}",
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
            cause = f"{type(exc).__name__}: {exc}"
            _report(
                f"Plugin '{ep.name}' {where} failed to load and was skipped: {cause}",
                f"Plugin '{ep.name}' {where} failed to load: {cause}",
                strict,
                exc,
            )
            continue
        infos[ep.name] = PluginInfo(ep.name, dist, version)


def strict_mode() -> bool:
    """True when NLPTASKS_STRICT_PLUGINS asks for plugin problems to be errors."""
    return os.environ.get("NLPTASKS_STRICT_PLUGINS", "") not in ("", "0")


# Appended to errors in strict mode: the warning's "was skipped" would be false there.
_STRICT_NOTE = " (an error because NLPTASKS_STRICT_PLUGINS is set)"


def _report(warning: str, error: str, strict: bool, exc: BaseException | None = None) -> None:
    """Warn with ``warning`` or, in strict mode, raise :class:`PluginError` with ``error``.

    Two texts because the outcome differs: a warning means the plugin (or its hook) was
    skipped and the command went on; an error means the command stopped.
    """
    if strict:
        raise PluginError(error.rstrip(".") + _STRICT_NOTE + ".") from exc
    warnings.warn(warning, PluginLoadWarning, stacklevel=3)


def report_hook_failure(plugin_name: str, hook: str, exc: BaseException) -> None:
    """A plugin's hook raised: one warning line naming it (an error in strict mode)."""
    info = _state.infos.get(plugin_name)
    where = ""
    if info is not None and info.distribution:
        where = (
            f" ({info.distribution} {info.version})" if info.version else f" ({info.distribution})"
        )
    cause = f"{type(exc).__name__}: {exc}"
    _report(
        f"Plugin '{plugin_name}'{where} failed in hook {hook}; other plugins are unaffected: "
        f"{cause}",
        f"Plugin '{plugin_name}'{where} failed in hook {hook}: {cause}",
        strict_mode(),
        exc,
    )


def trace_enabled() -> bool:
    """True when NLPTASKS_TRACE_PLUGINS asks for one stderr line per hook implementation call."""
    return os.environ.get("NLPTASKS_TRACE_PLUGINS", "") not in ("", "0")


def call_hook(
    hook_name: str,
    *,
    kwargs_for: Callable[[str], Mapping[str, Any]] | None = None,
    skip: Collection[str] = (),
    on_failure: Callable[[str, Exception], None] | None = None,
    **kwargs: Any,
) -> list[tuple[str, Any]]:
    """Call every implementation of ``hook_name``, each in its own ``try``.

    The one way nlptasks calls its hooks (registries, CLI commands, ``on_event``), so order,
    isolation and tracing are the same everywhere.

    Args:
        hook_name: a hook from :mod:`nlptasks.plugins.hookspecs`, e.g. ``"register_tasks"``.
        kwargs_for: ``kwargs_for(plugin_name)`` returns keyword arguments for that plugin's
            implementation only, merged over ``kwargs`` (e.g. a ``register`` callback that
            knows which plugin registers).
        skip: plugin names whose implementation is not called (e.g. trackers that failed).
        on_failure: ``on_failure(plugin_name, exc)`` is called when an implementation raises
            anything but an :class:`NlpTasksError`, before the failure is reported.
        **kwargs: the hook's arguments, the same for every plugin.

    Returns:
        ``(plugin_name, result)`` for each implementation that ran without raising, in call
        order; unlike pluggy, ``None`` results are kept so every pair names its plugin.

    Implementations run in pluggy's own order: last registered first, ``tryfirst`` ones before
    and ``trylast`` ones after the rest. Wrappers (``wrapper``/``hookwrapper``) are not called:
    they wrap pluggy's own loop, which this replaces. An :class:`NlpTasksError` propagates (it
    already says what to do); any other exception is one warning naming the plugin
    (:func:`report_hook_failure`; an error in strict mode) and the next plugin still runs.
    """
    pm = get_plugin_manager()
    trace = trace_enabled()
    results: list[tuple[str, Any]] = []
    # pluggy keeps implementations ordered trylast .. plain (registration order) .. tryfirst
    # and calls them from the end; reversed() is exactly that order.
    for impl in reversed(getattr(pm.hook, hook_name).get_hookimpls()):
        if impl.hookwrapper or impl.wrapper or impl.plugin_name in skip:
            continue
        given = {**kwargs, **kwargs_for(impl.plugin_name)} if kwargs_for else kwargs
        # Outside the try: a missing argument is a bug in nlptasks, not in the plugin.
        try:
            args = [given[name] for name in impl.argnames]
        except KeyError as exc:
            raise pluggy.HookCallError(
                f"hook {hook_name} must be called with argument {exc.args[0]!r}"
            ) from None
        # Like pluggy: optional (defaulted) parameters get a value only when one is given.
        optional = {name: given[name] for name in impl.kwargnames if name in given}
        started = time.perf_counter()
        outcome = "ok"
        try:
            results.append((impl.plugin_name, impl.function(*args, **optional)))
        except NlpTasksError as exc:
            outcome = f"raised {type(exc).__name__}"
            raise  # our own errors (e.g. a bad target) already say what to do
        except Exception as exc:
            outcome = f"raised {type(exc).__name__}"
            if on_failure is not None:
                on_failure(impl.plugin_name, exc)
            report_hook_failure(impl.plugin_name, hook_name, exc)
        finally:
            if trace:
                _trace(hook_name, impl.plugin_name, time.perf_counter() - started, outcome)
    return results


def _trace(hook_name: str, plugin_name: str, seconds: float, outcome: str) -> None:
    # stderr, never stdout: `nlptasks ... --json` output must stay parseable while tracing.
    sys.stderr.write(
        f"nlptasks trace: {hook_name} {plugin_name} {seconds * 1000:.2f} ms {outcome}\n"
    )
    sys.stderr.flush()


def _own_version() -> str:
    from nlptasks.version import __version__

    return __version__
