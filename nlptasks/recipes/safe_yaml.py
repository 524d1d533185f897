"""YAML for recipes and overrides, with limits: what PyYAML's ``safe_load`` reads, except what
would cost a traceback or the machine's memory instead of one line.

- nesting deeper than :data:`MAX_DEPTH` (10,000 ``[`` overflow the composer's recursion);
- aliases that expand to more than :data:`MAX_ALIAS_NODES` values (a 7-line "billion laughs"
  recipe of aliases of aliases expands to millions), or that hold themselves;
- integers longer than Python converts (``sys.get_int_max_str_digits``, 4300 digits).

Each is a :class:`YAMLLimitError` (a ``yaml.YAMLError``, with the line where the reader
stopped), so callers report it like malformed YAML. This module imports nothing of nlptasks.
"""

from __future__ import annotations

import sys
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

MAX_DEPTH = 100
"""Nesting a recipe may have (they use three or four levels)."""
MAX_ALIAS_NODES = 100_000
"""Values that aliases may add to a document when expanded (a recipe uses none or a few)."""


class YAMLLimitError(yaml.MarkedYAMLError):
    """YAML that is well-formed but past one of this module's limits; ``note`` is the fix."""


class _LimitedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` with a nesting limit, an alias-expansion limit and an integer
    length limit."""

    _depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise YAMLLimitError(
                    problem=f"values nested more than {MAX_DEPTH} levels deep",
                    problem_mark=self.peek_event().start_mark,
                    note="Write them with less nesting.",
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_document(self) -> Node | None:
        node = super().compose_document()
        if node is not None:
            _check_aliases(node)
        return node


def _construct_int(loader: yaml.SafeLoader, node: ScalarNode) -> int:
    digits = sum(c.isdigit() for c in str(node.value))
    limit = sys.get_int_max_str_digits() or sys.maxsize
    if digits > limit:
        raise YAMLLimitError(
            problem=f"an integer of {digits} digits (at most {limit} can be read)",
            problem_mark=node.start_mark,
            note="Write a smaller number.",
        )
    return int(yaml.SafeLoader.construct_yaml_int(loader, node))


_LimitedLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)


def _check_aliases(root: Node) -> None:
    """Refuse a document whose aliases expand past :data:`MAX_ALIAS_NODES` values, or that
    holds itself (``a: &a [*a]``). Sizes are memoised per node, so this is linear in the
    document as written, not as expanded."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    distinct: set[int] = set()

    def size(node: Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise YAMLLimitError(
                problem="an alias that refers to the value holding it",
                problem_mark=node.start_mark,
                note="Write the value out instead.",
            )
        open_nodes.add(key)
        distinct.add(key)
        total = 1
        if isinstance(node, SequenceNode):
            total += sum(size(child) for child in node.value)
        elif isinstance(node, MappingNode):
            total += sum(size(k) + size(v) for k, v in node.value)
        open_nodes.discard(key)
        sizes[key] = total
        if total - len(distinct) > MAX_ALIAS_NODES:
            raise YAMLLimitError(
                problem=f"aliases that expand to more than {MAX_ALIAS_NODES} values",
                problem_mark=node.start_mark,
                note="Write the values out, with fewer aliases.",
            )
        return total

    size(root)


def load_yaml(text: str) -> Any:
    """The YAML document in ``text`` as Python data, like ``yaml.safe_load``, within the
    limits above (a :class:`YAMLLimitError` otherwise)."""
    loader = _LimitedLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()
