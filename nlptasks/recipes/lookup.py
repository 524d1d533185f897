"""Finding recipes: registered names, files, a task's default and options class, reading
YAML with one level of ``extends``, and registering a plugin's folder of recipes."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from nlptasks.errors import ConfigError, NlpTasksError, PluginError, UnknownNameError
from nlptasks.plugins.registry import get_registries
from nlptasks.recipes.safe_yaml import YAMLLimitError, load_yaml
from nlptasks.task import task_info


def options_class(task: str) -> type:
    """The options dataclass the registered ``task`` declares (:class:`NoOptions` if none)."""
    entry = get_registries().tasks.get(task)
    cls = task_info(entry.load(), task).options
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise PluginError(
            f"Task '{task}' (plugin '{entry.plugin}') has options that are not a dataclass "
            f"(TaskInfo.options). Fix the plugin: declare its options with @dataclass."
        )
    return cls


def resolve_recipe_path(task: str, recipe: str | None) -> tuple[Path, str]:
    """Return (path, recipe name) for a registered name, a file path, or the task default."""
    regs = get_registries()
    task_entry = regs.tasks.get(task)
    if recipe is None:
        recipe = task_info(task_entry.load(), task).default_recipe
    candidate = Path(recipe)
    # A folder that happens to share a recipe's name is not a recipe file.
    if candidate.suffix in (".yaml", ".yml") or candidate.is_file():
        if not candidate.is_file():
            raise NlpTasksError(
                f"Recipe file '{recipe}' does not exist. Check the path, or see "
                f"'nlptasks recipes list' for built-in recipes."
            )
        return candidate, candidate.stem
    key = recipe if "/" in recipe else f"{task}/{recipe}"
    if key in regs.recipes and (owner := regs.recipes.get(key).tasks[0]) != task:
        raise ConfigError(recipe, [another_task(owner, task, recipe)])
    if key not in regs.recipes:
        known = [n.split("/", 1)[1] for n in regs.recipes.names() if n.startswith(f"{task}/")]
        raise UnknownNameError(
            f"recipe for task '{task}'", recipe, known, "See 'nlptasks recipes list'."
        )
    return regs.recipes.get(key).target, key.split("/", 1)[1]


def locate_recipe(item: str) -> tuple[Path, str]:
    """(path, task) of a recipe file or a registered recipe (``TASK/NAME``, or ``NAME`` if
    only one task has it).

    A registered recipe's task comes from its registration (a plugin's file may live in any
    folder); a file's from its own ``task:`` key, never from its folder's name.
    """
    path = Path(item)
    if path.is_file():
        task = recipe_task(path, read_recipe_dict(path))
        if not task:
            raise ConfigError(str(path), ["has no 'task:' key. Add 'task: NAME' to the file."])
        return path, str(task)
    regs = get_registries()
    matches = [e for e in regs.recipes if item in (e.name, e.name.split("/", 1)[1])]
    if len(matches) == 1:
        return matches[0].target, matches[0].tasks[0]
    if len(matches) > 1:
        names = ", ".join(e.name for e in matches)
        raise NlpTasksError(
            f"Recipe name '{item}' is ambiguous: {names}. Write TASK/NAME, e.g. {matches[0].name}."
        )
    raise UnknownNameError("recipe", item, regs.recipes.names(), "See 'nlptasks recipes list'.")


def recipe_task(path: Path, raw: dict[str, Any], wanted: str | None = None) -> str | None:
    """The task of a recipe file: its own ``task:`` key, else the task it is registered for
    (a plugin's recipes, the built-in ones included, name none: their registration does).
    One file may be registered for several tasks: ``wanted`` among them is its task."""
    if raw.get("task"):
        return str(raw["task"])
    target = path.resolve()
    owners = [
        task
        for entry in get_registries().recipes
        if isinstance(entry.target, (str, Path)) and Path(entry.target).resolve() == target
        for task in entry.tasks
    ]
    if wanted in owners:
        return wanted
    return owners[0] if owners else None


def another_task(owner: str, task: str, recipe: str | Path) -> str:
    """The problem of giving a recipe of task ``owner`` to a command for ``task`` (never a
    list of its options as unknown keys)."""
    return (
        f"is a recipe for task '{owner}', not '{task}'. Give a '{task}' recipe, or run "
        f"'nlptasks run {owner} --recipe {recipe}'."
    )


def read_recipe_dict(path: Path, task: str | None = None) -> dict[str, Any]:
    """Read a YAML recipe and merge the one recipe it ``extends`` (one level only)."""
    raw = read_yaml(path)
    parent_ref = raw.pop("extends", None)
    if parent_ref is None:
        return raw
    parent_path = _resolve_parent(path, str(parent_ref), task or raw.get("task"))
    parent = read_yaml(parent_path)
    if "extends" in parent:
        raise ConfigError(
            str(path),
            [
                f"extends '{parent_ref}', which itself extends '{parent['extends']}'; only one "
                f"level of 'extends' is allowed. Copy the keys you need instead."
            ],
        )
    return _deep_merge(parent, raw)


def _resolve_parent(child: Path, ref: str, task: str | None) -> Path:
    sibling = child.parent / (ref if ref.endswith((".yaml", ".yml")) else f"{ref}.yaml")
    if sibling.is_file():
        return sibling
    if task:
        return resolve_recipe_path(task, ref)[0]
    raise ConfigError(str(child), [f"extends '{ref}', which was not found next to it."])


def read_yaml(path: Path) -> dict[str, Any]:
    """One recipe file as a dict (``extends`` not resolved); malformed YAML is one line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise NlpTasksError(f"Cannot read recipe '{path}': {exc.strerror}.") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            str(path), [f"is not UTF-8 text ({exc.reason} at byte {exc.start}). Save it as UTF-8."]
        ) from None
    try:
        data = load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}{where}", [yaml_problem(exc)]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(str(path), ["must be a YAML mapping of keys to values."])
    return data


def yaml_problem(exc: yaml.YAMLError) -> str:
    """What is wrong with unreadable YAML, and the fix, in one line."""
    problem = getattr(exc, "problem", None) or "invalid YAML"
    if isinstance(exc, YAMLLimitError):
        return f"{problem}. {exc.note}"
    return f"malformed YAML ({problem}). Fix the syntax there."


def _deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def register_recipe_folder(register: Callable[..., None], task: str, folder: str | Path) -> None:
    """Register every ``*.yaml`` in ``folder`` as a recipe of ``task``, named by its file
    stem: what a plugin's ``register_recipes`` hook does with the recipes it ships."""
    for path in sorted(Path(folder).glob("*.yaml")):
        register(task, path.stem, path)
