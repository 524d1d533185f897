"""Typed registries built from the plugin hooks.

Each registry maps a name to an entry and the plugin that provided it. Registries are built on
first use and rebuilt when the set of plugins changes. Heavy objects are registered as lazy
``"module:attr"`` strings so that listing never imports torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from nlptasks import plugins
from nlptasks.errors import DuplicateNameError, NlpTasksError, UnknownNameError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered thing: its name, the object (or lazy reference) and who provided it."""

    name: str
    target: T
    plugin: str
    description: str = ""
    tasks: tuple[str, ...] = field(default=())

    def load(self) -> Any:
        """Return the target, importing it first if it is a ``"module:attr"`` string."""
        if isinstance(self.target, str) and ":" in self.target:
            module_name, _, attr = self.target.partition(":")
            obj: Any = importlib.import_module(module_name)
            for part in attr.split("."):
                obj = getattr(obj, part)
            return obj
        return self.target


class Registry(Generic[T]):
    """Name -> :class:`Entry`, with duplicate detection and "did you mean" lookups."""

    def __init__(self, kind: str, list_command: str) -> None:
        self.kind = kind
        self.list_command = list_command
        self._entries: dict[str, Entry[T]] = {}

    def add(self, entry: Entry[T]) -> None:
        existing = self._entries.get(entry.name)
        if existing is not None:
            raise DuplicateNameError(
                f"{self.kind.capitalize()} '{entry.name}' is registered by both plugin "
                f"'{existing.plugin}' and plugin '{entry.plugin}'. Uninstall one of them or "
                f"limit plugins with NLPTASKS_LOAD_PLUGINS."
            )
        self._entries[entry.name] = entry

    def get(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(
                self.kind, name, self._entries, f"See '{self.list_command}'."
            ) from None

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
    metrics: Registry[Any]
    recipes: Registry[Path]  # keyed "task/name"


_cache: tuple[int, Registries] | None = None


def get_registries() -> Registries:
    """Return the registries, building them from the plugins on first use."""
    global _cache
    pm = plugins.get_plugin_manager()
    gen = plugins.generation()
    if _cache is not None and _cache[0] == gen:
        return _cache[1]
    regs = Registries(
        tasks=Registry("task", "nlptasks list tasks"),
        models=Registry("model preset", "nlptasks list models"),
        datasets=Registry("dataset", "nlptasks list datasets"),
        metrics=Registry("metric", "nlptasks list metrics"),
        recipes=Registry("recipe", "nlptasks list recipes"),
    )
    hooks: tuple[tuple[str, Registry[Any], Callable[..., Callable[..., None]]], ...] = (
        ("register_tasks", regs.tasks, _registrar),
        ("register_models", regs.models, _registrar),
        ("register_datasets", regs.datasets, _registrar),
        ("register_metrics", regs.metrics, _registrar),
        ("register_recipes", regs.recipes, _recipe_registrar),
    )
    for hook_name, registry, make_register in hooks:
        # Each plugin gets its own callback so every entry knows which plugin provided it,
        # and each runs in its own try: one broken plugin never hides the others.
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            try:
                impl.function(register=make_register(registry, impl.plugin_name))
            except NlpTasksError:
                raise  # e.g. a duplicate name: an error that names both plugins
            except Exception as exc:
                plugins.report_hook_failure(impl.plugin_name, hook_name, exc)
    _cache = (plugins.generation(), regs)
    return regs


def _registrar(registry: Registry[Any], plugin_name: str) -> Callable[..., None]:
    def register(
        name: str, target: Any, description: str = "", tasks: tuple[str, ...] | list[str] = ()
    ) -> None:
        registry.add(Entry(name, target, plugin_name, description, tuple(tasks)))

    return register


def _recipe_registrar(registry: Registry[Path], plugin_name: str) -> Callable[..., None]:
    def register(task: str, name: str, path: str | Path, description: str = "") -> None:
        registry.add(Entry(f"{task}/{name}", Path(path), plugin_name, description, (task,)))

    return register
