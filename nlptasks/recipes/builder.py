"""The typed builder: a dataclass from a mapping (a recipe's YAML), every problem at once.

It knows nothing of recipes: it reads a dataclass's type hints, checks each value against
them (``int``, ``float``, ``str``, ``bool``, ``Literal``, ``X | None``, lists, tuples,
mappings and nested dataclasses), and says what is wrong in one line per problem, with a
suggestion for a misspelled key. Value checks beyond types are the dataclasses' own
(``problems()``, see :mod:`nlptasks.recipes.schema`).
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from nlptasks.errors import clip, clip_repr

T = TypeVar("T")

INT_RANGE = (-(2**63), 2**63 - 1)
"""What an integer setting may hold: torch and numpy keep integers in 64 bits, and a larger
one fails there, in the middle of a run, with their traceback."""

Suggest = Callable[[str, str, Sequence[str]], str]
"""``suggest(prefix, key, known)``: the hint after ``unknown key 'PREFIXKEY'.`` (starting
with a space), given the keys the section has."""


def suggest_key(prefix: str, key: str, known: Sequence[str]) -> str:
    """`` Did you mean 'PREFIX.KNOWN'?`` for a misspelled key, else the keys there are."""
    close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
    if close:
        return f" Did you mean '{prefix}{close[0]}'?"
    return f" Known keys: {', '.join(prefix + k for k in known) or 'none'}."


def build_dataclass(
    cls: type[T],
    raw: object,
    where: str = "",
    *,
    field_types: Mapping[str, Any] | None = None,
    overridden: Collection[str] = frozenset(),
    suggest: Suggest = suggest_key,
) -> tuple[T | None, list[str]]:
    """Build ``cls`` (a dataclass) from ``raw`` and return ``(instance, problems)``.

    The instance is None exactly when there are problems; the problems are every one found
    (unknown keys with a suggestion, values of the wrong type, missing required keys, in
    nested dataclasses too), one line each, e.g. ``'train.epochs' must be a number, got str
    'x'.`` Values are converted where YAML is loose: an int or ``"2e-5"`` for a float, a
    number for a string, a list for a tuple, a bare ``no``/``yes`` for such a Literal.

    ``where`` is the dotted key of ``raw`` in its document (``"expect"``; ``""`` for the
    top), used in the messages. ``field_types`` replaces the declared type of a field, by
    its dotted key (a recipe's ``{"options": TaskOptions}``, declared ``Any``); a replaced
    field left out of ``raw`` gets the replacement's defaults. Problems of a key in
    ``overridden`` (dotted keys set on the command line) say ``(set by an override)``.
    ``suggest`` makes the hint for an unknown key (:func:`suggest_key` by default).
    """
    problems: list[str] = []
    builder = _Builder(dict(field_types or {}), overridden, suggest)
    built = builder.build(cls, raw, f"{where}." if where else "", problems)
    return built, problems


def field_hints(
    cls: Any, prefix: str = "", field_types: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The type of each field of the dataclass ``cls`` at ``prefix`` (``"train."``), with
    the replacements of ``field_types`` (see :func:`build_dataclass`) in place."""
    hints = typing.get_type_hints(cls)
    for name in hints:
        if field_types and f"{prefix}{name}" in field_types:
            hints[name] = field_types[f"{prefix}{name}"]
    return hints


def optional_dataclass(expected: Any) -> Any:
    """The dataclass of an ``X | None`` hint, else None."""
    if typing.get_origin(expected) not in (typing.Union, types.UnionType):
        return None
    classes = [a for a in typing.get_args(expected) if dataclasses.is_dataclass(a)]
    return classes[0] if len(classes) == 1 else None


@dataclass(frozen=True)
class _Builder:
    field_types: dict[str, Any]
    overridden: Collection[str]
    suggest: Suggest

    def build(self, cls: Any, raw: object, prefix: str, problems: list[str]) -> Any:
        if not isinstance(raw, Mapping):
            problems.append(f"'{prefix.rstrip('.')}' must be a mapping, got {_describe(raw)}.")
            return None
        problems_before = len(problems)
        hints = field_hints(cls, prefix, self.field_types)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for key, value in raw.items():
            if key not in fields:
                hint = self.suggest(prefix, str(key), list(fields))
                problems.append(f"unknown key '{prefix}{clip(key)}'.{hint}")
                continue
            expected = hints[key]
            if value is not None and (inner := optional_dataclass(expected)) is not None:
                expected = inner  # an optional section (expect:) that is given
            if dataclasses.is_dataclass(expected):
                values[key] = self.build(expected, value, f"{prefix}{key}.", problems)
                continue
            origin = " (set by an override)" if f"{prefix}{key}" in self.overridden else ""
            if expected is not str and _has_huge_number(value):
                low, high = INT_RANGE
                problems.append(
                    f"'{prefix}{key}'{origin} holds {_describe(value)}, past what a number "
                    f"setting can hold ({low}..{high}). Write a smaller number."
                )
                continue
            ok, converted = _check_type(value, expected)
            if not ok:
                problems.append(
                    f"'{prefix}{key}'{origin} must be {_type_name(expected)}, "
                    f"got {_describe(value)}."
                )
                continue
            values[key] = converted
        required = {
            name
            for name, f in fields.items()
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        }
        for name in fields:
            if name in required and name not in values and name not in raw:
                problems.append(
                    f"missing required key '{prefix}{name}'. Add '{prefix}{name}: ...'."
                )
        for name in fields:
            replaced = self.field_types.get(f"{prefix}{name}")
            if name not in raw and name not in required and dataclasses.is_dataclass(replaced):
                # The replacement's defaults, not the declared default; its fields without
                # a default are reported like any other missing key.
                values[name] = self.build(replaced, {}, f"{prefix}{name}.", problems)
        if len(problems) > problems_before:
            return None
        return cls(**values)


def _check_type(value: Any, expected: Any) -> tuple[bool, Any]:
    origin = typing.get_origin(expected)
    args = typing.get_args(expected)
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            ok, converted = _check_type(value, arg)
            if ok:
                return True, converted
        return False, None
    if expected is type(None):
        return value is None, None
    if origin is Literal:
        if isinstance(value, bool):
            # YAML 1.1 reads a bare no/yes in a recipe file as a boolean.
            word = "yes" if value else "no"
            return word in args, word
        return value in args, value
    if origin is list:
        if not isinstance(value, list):
            return False, None
        items = [_check_type(v, args[0]) for v in value]
        return all(ok for ok, _ in items), [c for _, c in items]
    if origin is tuple:  # YAML has lists; a tuple field takes one (``tuple[str, ...]``)
        if not isinstance(value, (list, tuple)):
            return False, None
        item_type = args[0] if args else Any
        items = [_check_type(v, item_type) if item_type is not Any else (True, v) for v in value]
        return all(ok for ok, _ in items), tuple(c for _, c in items)
    if origin is dict:
        if not isinstance(value, dict):
            return False, None
        pairs = [(_check_type(k, args[0]), _check_type(v, args[1])) for k, v in value.items()]
        ok = all(k[0] and v[0] for k, v in pairs)
        return ok, {k[1]: v[1] for k, v in pairs} if ok else None
    if origin is not None:  # other generics (tuple[...], set[...]): YAML gives lists
        return False, None
    if expected is bool:
        return isinstance(value, bool), value
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if expected is float:
        if isinstance(value, bool):
            return False, None
        if isinstance(value, (int, float)):
            return True, float(value)
        # YAML 1.1 reads "2e-5" as a string; accept it as a number.
        if isinstance(value, str):
            try:
                return True, float(value)
            except ValueError:
                return False, None
        return False, None
    if expected is str:
        # Numbers are fine where a string is expected (e.g. a model name "123").
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return True, str(value)
        return False, None
    return isinstance(value, expected), value


def _type_name(expected: Any) -> str:
    origin = typing.get_origin(expected)
    args = typing.get_args(expected)
    if origin in (typing.Union, types.UnionType):
        names = [_type_name(a) for a in args if a is not type(None)]
        return " or ".join(names) + (" or null" if type(None) in args else "")
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin is list:
        return f"a list of {_type_name(args[0])}"
    if origin is dict:
        return f"a mapping of {_type_name(args[0])} to {_type_name(args[1])}"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        expected, getattr(expected, "__name__", str(expected))
    )


def _has_huge_number(value: Any) -> bool:
    """Whether ``value`` is, or holds, an integer outside :data:`INT_RANGE` (one too large
    for a float too: ``float(10**400)`` raises)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return not INT_RANGE[0] <= value <= INT_RANGE[1]
    if isinstance(value, (list, tuple)):
        return any(_has_huge_number(v) for v in value)
    if isinstance(value, dict):
        return any(_has_huge_number(k) or _has_huge_number(v) for k, v in value.items())
    return False


def _describe(value: Any) -> str:
    """The type and value a message quotes, cut to a readable length."""
    if value is None:
        return "null"
    return f"{type(value).__name__} {clip_repr(value)}"
