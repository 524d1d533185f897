"""A recipe from its name or file: find, read, extend, override, build and validate, with
every problem reported at once."""

from __future__ import annotations

import copy
import dataclasses
import warnings
from typing import Any

from nlptasks.errors import ConfigError
from nlptasks.recipes.builder import build_dataclass
from nlptasks.recipes.lookup import (
    another_task,
    options_class,
    read_recipe_dict,
    recipe_task,
    resolve_recipe_path,
)
from nlptasks.recipes.overrides import (
    Overrides,
    apply_overrides_with_problems,
    override_keys,
    recipe_suggestions,
)
from nlptasks.recipes.schema import (
    DataConfig,
    DistributedConfig,
    GenerationConfig,
    LoraConfig,
    Recipe,
    TrainConfig,
    own_problems,
    recipe_field_types,
)


def load_recipe(task: str, recipe: str | None = None, overrides: Overrides = ()) -> Recipe:
    """Find, load, extend, override and validate a recipe for ``task``.

    ``recipe`` is a registered name (``minilm`` or ``sentiment/minilm``), a YAML path, or None
    for the task's default recipe.
    """
    path, name = resolve_recipe_path(task, recipe)
    raw = read_recipe_dict(path, task)
    owner = recipe_task(path, raw, task)
    if owner is not None and owner != task:
        raise ConfigError(str(path), [another_task(owner, task, path)])
    options_cls = options_class(task)
    raw = _move_task_settings(raw, options_cls, str(path))
    raw, override_problems = apply_overrides_with_problems(raw, overrides, options_cls)
    raw.setdefault("task", task)
    raw.setdefault("name", name)
    try:
        recipe_obj = validate(raw, str(path), options_cls, overridden=override_keys(overrides))
    except ConfigError as exc:  # every problem at once: the overrides' and the recipe's
        raise ConfigError(str(path), override_problems + exc.problems) from None
    if override_problems:
        raise ConfigError(str(path), override_problems)
    return recipe_obj


def validate(
    raw: dict[str, Any],
    source: str,
    options_cls: type | None = None,
    overridden: set[str] | frozenset[str] = frozenset(),
) -> Recipe:
    """Build a :class:`Recipe` from a dict, reporting every problem at once.

    ``options_cls`` defaults to the options class of the task ``raw`` names; problems with a
    key in ``overridden`` are said to come from the command line.
    """
    if options_cls is None:
        task = raw.get("task")
        if not task:
            raise ConfigError(source, ["missing required key 'task'. Add 'task: NAME'."])
        options_cls = options_class(str(task))
    recipe, problems = build_dataclass(
        Recipe,
        raw,
        field_types=recipe_field_types(options_cls),
        overridden=overridden,
        suggest=recipe_suggestions(options_cls),
    )
    if recipe is not None:
        problems.extend(recipe.problems())
    else:
        problems.extend(_section_problems(raw, options_cls))
    if problems or recipe is None:
        raise ConfigError(source, problems)
    return recipe


def _section_problems(raw: dict[str, Any], options_cls: type) -> list[str]:
    """Value checks of each section that built, when another did not: every problem is still
    reported at once."""
    problems: list[str] = []
    for name, cls in (
        ("train", TrainConfig),
        ("data", DataConfig),
        ("generation", GenerationConfig),
        ("lora", LoraConfig),
        ("distributed", DistributedConfig),
        ("options", options_cls),
    ):
        built, type_problems = build_dataclass(cls, raw.get(name, {}), name)
        if built is not None and not type_problems:  # its type problems are reported already
            problems.extend(own_problems(built))
    return problems


def _move_task_settings(raw: dict[str, Any], options_cls: type, source: str) -> dict[str, Any]:
    """Read task settings a recipe still keeps under ``data`` (as recipes, and the
    ``recipe.yaml`` of runs, did before tasks had options) as ``options``, with a warning."""
    data = raw.get("data")
    if not isinstance(data, dict):
        return raw
    own = {f.name for f in dataclasses.fields(options_cls)} - {
        f.name for f in dataclasses.fields(DataConfig)
    }
    moved = [key for key in data if key in own]
    if not moved:
        return raw
    raw = copy.deepcopy(raw)
    options = raw.setdefault("options", {})
    if not isinstance(options, dict):
        return raw  # validation reports the malformed section
    for key in moved:
        options.setdefault(key, raw["data"].pop(key))
    keys = ", ".join(f"data.{k}" for k in moved)
    warnings.warn(
        f"Recipe {source}: {keys} are task options now; read as options.* (move them there).",
        stacklevel=3,
    )
    return raw
