"""Recipes: YAML files that say everything about one run, validated against a typed schema.

A recipe names a task, a model and its data and training settings, the task's own settings
(``options:``, a dataclass the task declares) and the shared generation settings
(``generation:``). It may ``extends:`` one other recipe (one level only). ``key=value``
overrides (values parsed as YAML) and ``~key`` removals (back to the default) apply after
loading. Validation reports every problem at once, with suggestions for misspelled keys.

The package, in import order (each module imports only those above it):

- :mod:`~nlptasks.recipes.schema`: the section dataclasses, each checking its own values
  (``problems()``), and the resolved recipe as data or YAML;
- :mod:`~nlptasks.recipes.builder`: :func:`build_dataclass`, any dataclass from a mapping
  with every type problem at once (it knows nothing of recipes);
- :mod:`~nlptasks.recipes.lookup`: registered names, files, ``extends``, a task's options
  class, :func:`register_recipe_folder`;
- :mod:`~nlptasks.recipes.overrides`: ``key=value`` / ``~key`` and key suggestions;
- :mod:`~nlptasks.recipes.loading`: :func:`load_recipe` and :func:`validate`, which put
  them together.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nlptasks.recipes.builder import build_dataclass
from nlptasks.recipes.schema import (
    DataConfig,
    DistributedConfig,
    Expectation,
    GenerationConfig,
    LoraConfig,
    NoOptions,
    Recipe,
    TrackConfig,
    TrainConfig,
    dump_recipe,
    recipe_to_dict,
    with_absolute_paths,
)

if TYPE_CHECKING:
    from nlptasks.recipes.loading import load_recipe, validate
    from nlptasks.recipes.lookup import (
        locate_recipe,
        options_class,
        read_recipe_dict,
        read_yaml,
        register_recipe_folder,
        resolve_recipe_path,
    )
    from nlptasks.recipes.overrides import apply_overrides

# schema and builder are leaves; these modules reach the registry and the task protocol,
# which itself imports the schema: loaded on first use, so that the task protocol can
# import the schema without a cycle.
_LAZY = {
    "load_recipe": "loading",
    "validate": "loading",
    "locate_recipe": "lookup",
    "options_class": "lookup",
    "read_recipe_dict": "lookup",
    "read_yaml": "lookup",
    "register_recipe_folder": "lookup",
    "resolve_recipe_path": "lookup",
    "apply_overrides": "overrides",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"nlptasks.recipes.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'nlptasks.recipes' has no attribute '{name}'")


__all__ = [
    "DataConfig",
    "Expectation",
    "GenerationConfig",
    "DistributedConfig",
    "LoraConfig",
    "NoOptions",
    "Recipe",
    "TrackConfig",
    "TrainConfig",
    "apply_overrides",
    "build_dataclass",
    "dump_recipe",
    "load_recipe",
    "locate_recipe",
    "options_class",
    "read_recipe_dict",
    "read_yaml",
    "recipe_to_dict",
    "register_recipe_folder",
    "resolve_recipe_path",
    "validate",
    "with_absolute_paths",
]
