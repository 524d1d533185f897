"""Typed registries built from the plugin hooks.

Each registry maps a name to an entry and the plugin that provided it. Registries are built on
first use and rebuilt when the set of plugins changes. Heavy objects are registered as lazy
``"module:attr"`` strings so that listing never imports torch.

A plugin's mistake stays with the names it touches: a name two plugins register is remembered
as a conflict that fails only lookups of that name, and a lazy target that cannot be imported
fails only when that entry is loaded.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from nlptasks.errors import DuplicateNameError, PluginError, UnknownNameError
from nlptasks.plugins import manager as plugins

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered thing: its name, the object (or lazy reference) and who provided it."""

    name: str
    target: T
    plugin: str
    description: str = ""
    tasks: tuple[str, ...] = field(default=())
    kind: str = "entry"
    """What the registry holds ("task", "model preset", ...), for error messages."""
    hub_id: str | None = None
    """Model presets only: the Hub id the preset is a copy of (the model card's base_model)."""

    def load(self) -> Any:
        """Return the target, importing it first if it is a ``"module:attr"`` string.

        A target that cannot be imported (a typo in the plugin) is a one-line
        :class:`PluginError` naming the plugin, the entry and the target.
        """
        if not isinstance(self.target, str):
            return self.target
        module_name, _, attr = self.target.partition(":")
        if not module_name or not attr:
            raise self._bad_target("it is not a 'module:attr' reference")
        try:
            obj: Any = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            # Only a missing module *named by the target* (or a parent package) is the
            # plugin's typo; a module that exists but needs something missing (torch, say)
            # is a different problem, left to its own traceback.
            if exc.name is None or not _is_same_or_parent(exc.name, module_name):
                raise
            raise self._bad_target(str(exc)) from None
        for part in attr.split("."):
            try:
                obj = getattr(obj, part)
            except AttributeError as exc:
                raise self._bad_target(str(exc)) from None
        return obj

    def _bad_target(self, why: str) -> PluginError:
        return PluginError(
            f"Plugin '{self.plugin}' registered {self.kind} '{self.name}' as '{self.target}', "
            f"which cannot be imported: {why}. Fix the target in the plugin."
        )


def _is_same_or_parent(missing: str, module_name: str) -> bool:
    return module_name == missing or module_name.startswith(missing + ".")


class Registry(Generic[T]):
    """Name -> :class:`Entry`, with conflict detection and "did you mean" lookups.

    A name registered twice is not an error when it is registered (that would stop every
    command, ``nlptasks list`` included, because of one plugin): the registry remembers the
    conflict and :meth:`get` of that name raises :class:`DuplicateNameError` naming the
    plugins. Every other name keeps working.
    """

    def __init__(self, kind: str, list_command: str) -> None:
        self.kind = kind
        self.list_command = list_command
        self._entries: dict[str, Entry[T]] = {}
        # name -> every plugin that registered it (only for names registered more than once).
        self._conflicts: dict[str, list[str]] = {}

    def add(self, entry: Entry[T]) -> None:
        existing = self._entries.get(entry.name)
        if existing is None:
            self._entries[entry.name] = entry
            return
        # The first entry stays for listing; lookups of the name fail (see get()).
        self._conflicts.setdefault(entry.name, [existing.plugin]).append(entry.plugin)

    def get(self, name: str) -> Entry[T]:
        if name in self._conflicts:
            raise DuplicateNameError(self._conflict_message(name))
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(
                self.kind, name, self._entries, f"See '{self.list_command}'."
            ) from None

    def conflict(self, name: str) -> tuple[str, ...]:
        """The plugins that registered ``name`` more than once between them, sorted (so the
        text does not depend on load order); empty when ``name`` is not a conflict."""
        return tuple(sorted(set(self._conflicts.get(name, ()))))

    def _conflict_message(self, name: str) -> str:
        owners = self.conflict(name)
        if len(owners) == 1:
            who = f"twice by plugin '{owners[0]}'"
        else:
            who = "by both " if len(owners) == 2 else "by "
            who += ", ".join(f"plugin '{p}'" for p in owners[:-1])
            who += f" and plugin '{owners[-1]}'"
        return (
            f"{self.kind.capitalize()} '{name}' is registered {who}. Uninstall one of them or "
            f"limit plugins with NLPTASKS_LOAD_PLUGINS."
        )

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        return sorted(self._entries)


@dataclass(frozen=True)
class Registries:
    """Every registry, built together from one pass over the hooks."""

    tasks: Registry[Any]
    models: Registry[Callable[[], str]]
    datasets: Registry[Any]
    recipes: Registry[Path]  # keyed "task/name"
    probes: Registry[Any]
    """Probe name -> a click command (or its lazy "module:attr" reference)."""


def load_task(name: str) -> Any:
    """A new instance of the registered task ``name`` (tasks are made with no arguments); a
    task class without its ``TaskInfo`` is one line naming the fix."""
    from nlptasks.task import missing_members, task_info

    cls = get_registries().tasks.get(name).load()
    info = task_info(cls, name)
    if missing := missing_members(cls):
        raise PluginError(
            f"Task '{name}' lacks {', '.join(missing)} of the Task protocol. Add "
            f"{'it' if len(missing) == 1 else 'them'} (see docs/plugins.md)."
        )
    if any(s.needs_generation for s in info.metrics) and not hasattr(cls, "generate_step"):
        raise PluginError(
            f"Task '{name}' declares metrics that need generation but has no generate_step "
            f"(nlptasks.Generates); they could never be reported. Add it, or drop "
            f"needs_generation."
        )
    return cls()


def get_registries() -> Registries:
    """Return the registries, building them from the plugins on first use (and again after
    the plugins change: the plugin state drops what it derived)."""
    derived = plugins.state().derived
    found = derived.get("registries")
    if isinstance(found, Registries):
        return found
    regs = Registries(
        tasks=Registry("task", "nlptasks list tasks"),
        models=Registry("model preset", "nlptasks list models"),
        datasets=Registry("dataset", "nlptasks list datasets"),
        recipes=Registry("recipe", "nlptasks list recipes"),
        probes=Registry("probe", "nlptasks probe list"),
    )
    _fill("register_tasks", regs.tasks, _registrar)
    _fill("register_models", regs.models, _model_registrar)
    _fill("register_datasets", regs.datasets, _registrar)
    _fill("register_recipes", regs.recipes, _recipe_registrar)
    _fill("register_probes", regs.probes, _registrar)
    derived["registries"] = regs
    return regs


_Tasks = tuple[str, ...] | list[str] | str
_MakeRegister = Callable[[Registry[Any], str], Callable[..., None]]


def _fill(hook_name: str, registry: Registry[Any], make_register: _MakeRegister) -> None:
    # Each plugin gets its own register callback so every entry knows which plugin provided
    # it; call_hook runs each plugin in its own try: one broken plugin never hides the others.
    plugins.call_hook(
        hook_name, kwargs_for=lambda plugin_name: {"register": make_register(registry, plugin_name)}
    )


def _registrar(registry: Registry[Any], plugin_name: str) -> Callable[..., None]:
    def register(name: str, target: Any, description: str = "", tasks: _Tasks = ()) -> None:
        registry.add(
            Entry(name, target, plugin_name, description, _task_names(tasks), kind=registry.kind)
        )

    return register


def _model_registrar(registry: Registry[Any], plugin_name: str) -> Callable[..., None]:
    def register(
        name: str,
        target: Any,
        description: str = "",
        tasks: _Tasks = (),
        hub_id: str | None = None,
    ) -> None:
        entry = Entry(
            name, target, plugin_name, description, _task_names(tasks), registry.kind, hub_id
        )
        registry.add(entry)

    return register


def _task_names(tasks: _Tasks) -> tuple[str, ...]:
    # tasks=("sentiment") is a string, not a tuple: one task, not one per letter.
    return (tasks,) if isinstance(tasks, str) else tuple(tasks)


def _recipe_registrar(registry: Registry[Path], plugin_name: str) -> Callable[..., None]:
    def register(task: str, name: str, path: str | Path, description: str = "") -> None:
        key = f"{task}/{name}"
        registry.add(Entry(key, Path(path), plugin_name, description, (task,), registry.kind))

    return register
