"""``key=value`` and ``~key`` overrides of a recipe, their values, and suggestions for keys
that are misspelled or live in another section."""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from collections.abc import Sequence
from typing import Any, Literal

import yaml

from nlptasks.errors import ConfigError, clip
from nlptasks.recipes.builder import Suggest, field_hints, optional_dataclass, suggest_key
from nlptasks.recipes.safe_yaml import YAMLLimitError, load_yaml
from nlptasks.recipes.schema import NoOptions, Recipe, recipe_field_types

Overrides = list[str] | tuple[str, ...]
"""Override arguments as given on the command line (``train.epochs=1``, ``~train.seed``)."""


def apply_overrides(
    raw: dict[str, Any], overrides: Overrides, options_cls: type = NoOptions
) -> dict[str, Any]:
    """Apply ``key=value`` (value parsed as YAML) and ``~key`` (remove) overrides.

    A key the schema does not have is reported as the override's mistake, not the recipe's.
    """
    result, problems = apply_overrides_with_problems(raw, overrides, options_cls)
    if problems:
        raise ConfigError("overrides", problems)
    return result


def apply_overrides_with_problems(
    raw: dict[str, Any], overrides: Overrides, options_cls: type
) -> tuple[dict[str, Any], list[str]]:
    """The overridden dict (a copy) and the problems of the overrides that could not apply,
    so that they are reported together with the recipe's own."""
    result = copy.deepcopy(raw)
    problems = []
    for item in overrides:
        if item.startswith("~"):
            keys = item[1:].split(".")
            if "=" in item or _field_type(keys, options_cls) is None:
                hint = _path_hint(keys, options_cls) if "=" not in item else ""
                hint = hint or (" Write ~KEY with no value." if "=" in item else "")
                problems.append(f"cannot remove '{clip(item[1:])}': not a recipe key.{hint}")
                continue
            node = result
            for key in keys[:-1]:
                node = node.get(key, {}) if isinstance(node, dict) else {}
            if isinstance(node, dict):
                node.pop(keys[-1], None)
            continue
        key, sep, value_text = item.partition("=")
        if not sep or not key:
            problems.append(
                f"override '{clip(item)}' is not KEY=VALUE or ~KEY (e.g. train.epochs=1)."
            )
            continue
        parts = key.split(".")
        expected = _field_type(parts, options_cls)
        if key == "task":
            problems.append(
                f"override '{clip(item)}' cannot change the task; run 'nlptasks run "
                f"{clip(value_text or 'TASK')} ...' instead."
            )
            continue
        if expected is None:
            problems.append(
                f"override '{clip(item)}' sets unknown key '{clip(key)}'."
                f"{_path_hint(parts, options_cls)}"
            )
            continue
        node = result
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        try:
            node[parts[-1]] = parse_value(value_text, expected)
        except YAMLLimitError as exc:
            problems.append(f"override '{clip(item)}' holds {exc.problem}. {exc.note}")
    return result, problems


def override_keys(overrides: Overrides) -> set[str]:
    """The dotted keys that ``key=value`` overrides set (their problems say so)."""
    return {item.partition("=")[0] for item in overrides if not item.startswith("~")}


def parse_value(text: str, expected: Any) -> Any:
    """An override's value: YAML, except that text meant for a string field stays text.

    YAML would turn ``no`` into False, ``1.10`` into 1.1, ``2024-01-01`` into a date and cut
    ``a #2`` at the comment; a string field (a path, a name) must get exactly what was typed.
    """
    if text == "":
        return None
    if _accepts_plain_text(expected) and text not in ("null", "~"):
        return text
    try:
        return load_yaml(text)
    except YAMLLimitError:
        raise  # well-formed, but past a limit: the caller says which
    except yaml.YAMLError:
        return text  # not YAML: keep the text, validation checks its type


def _accepts_plain_text(expected: Any) -> bool:
    if expected is str:
        return True
    args = typing.get_args(expected)
    if typing.get_origin(expected) is Literal:
        return all(isinstance(a, str) for a in args)
    if typing.get_origin(expected) in (typing.Union, types.UnionType):
        real = [a for a in args if a is not type(None)]
        return len(real) == 1 and _accepts_plain_text(real[0])
    return False


def recipe_suggestions(options_cls: type) -> Suggest:
    """The hint for an unknown recipe key: a task setting written under ``data`` (e.g.
    ``data.label_names``) is pointed at the options section, else :func:`suggest_key`."""
    own = {f.name for f in dataclasses.fields(options_cls)}

    def suggest(prefix: str, key: str, known: Sequence[str]) -> str:
        if prefix == "data." and key in own:
            return f" Did you mean 'options.{key}'? (task settings live in options)"
        return suggest_key(prefix, key, known)

    return suggest


def _field_type(path: list[str], options_cls: type = NoOptions) -> Any:
    """The schema type at a dotted path (``["train", "epochs"]``), or None if there is none."""
    field_types = recipe_field_types(options_cls)
    cls: Any = Recipe
    prefix = ""
    for part in path:
        cls = optional_dataclass(cls) or cls
        if typing.get_origin(cls) is dict:  # a mapping's key (expect.min.accuracy)
            cls = typing.get_args(cls)[1]
            continue
        if not dataclasses.is_dataclass(cls):
            return None
        hints = field_hints(cls, prefix, field_types)
        if part not in hints:
            return None
        prefix += f"{part}."
        cls = hints[part]
    return cls


def _path_hint(path: list[str], options_cls: type = NoOptions) -> str:
    field_types = recipe_field_types(options_cls)
    cls: Any = Recipe
    prefix = ""
    for part in path:
        if not dataclasses.is_dataclass(cls):
            return ""
        hints = field_hints(cls, prefix, field_types)
        if part not in hints:
            return recipe_suggestions(options_cls)(prefix, part, list(hints))
        prefix += f"{part}."
        cls = hints[part]
    return ""
