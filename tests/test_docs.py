"""The plugin author's reference (docs/plugins.md) follows the code: every hook the plugin
manager knows and every method of the Task protocols has a docstring, a test, and an entry on
the page with its exact signature (as datasette's test_docs.py does for its hooks)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import pytest

from nlptasks import task as protocols
from nlptasks.plugins import get_plugin_manager

ROOT = Path(__file__).resolve().parents[1]
PAGE = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
TESTS = "\n".join(p.read_text(encoding="utf-8") for p in sorted((ROOT / "tests").rglob("*.py")))
TASKS = TESTS + "\n".join(
    p.read_text(encoding="utf-8") for p in sorted((ROOT / "plugins").rglob("*.py"))
)
PROTOCOLS = (
    protocols.Task,
    protocols.ReadsExamples,
    protocols.ReadsSources,
    protocols.WritesSamples,
    protocols.StreamsPredictions,
    protocols.GeneratingTask,
)


def hook_specs() -> dict[str, Any]:
    """The hook specifications, as the plugin manager has them (not a hand-kept list)."""
    relay = get_plugin_manager().hook
    return {
        name: caller.spec.function
        for name, caller in vars(relay).items()
        if getattr(caller, "spec", None) is not None
    }


def protocol_methods() -> dict[str, Any]:
    methods = {}
    for protocol in PROTOCOLS:
        for name, value in vars(protocol).items():
            if not name.startswith("_") and inspect.isfunction(value):
                methods[name] = value
    return methods


def signature(function: Any) -> str:
    # Annotations are strings (from __future__ import annotations): the page shows them bare.
    return f"{function.__name__}{inspect.signature(function)}".replace("'", "")


def test_the_plugin_manager_knows_the_hooks() -> None:
    assert {
        "register_tasks",
        "register_models",
        "register_datasets",
        "register_metrics",
        "register_recipes",
        "register_commands",
        "on_event",
    } <= set(hook_specs())


@pytest.mark.parametrize("name", sorted(hook_specs()))
def test_every_hook_has_a_docstring_a_test_and_its_entry(name: str) -> None:
    spec = hook_specs()[name]
    doc = inspect.getdoc(spec) or ""
    assert "Args:" in doc, f"hook {name}: its docstring must describe its arguments"
    assert f"def test_hook_{name}(" in TESTS, f"hook {name}: no test_hook_{name} in tests/"
    assert f"### `{signature(spec)}`" in PAGE, (
        f"hook {name}: docs/plugins.md needs a '### `{signature(spec)}`' entry"
    )


@pytest.mark.parametrize("name", sorted(protocol_methods()))
def test_every_task_method_has_a_docstring_a_test_and_its_entry(name: str) -> None:
    method = protocol_methods()[name]
    assert inspect.getdoc(method), f"Task.{name} has no docstring"
    # Tested: a task the suite runs implements it (a built-in or a fixture plugin), and the
    # tests name it (a fixture task's own method, or a test that calls it).
    assert re.search(rf"def {name}\(\s*self", TASKS), f"no task implements {name}"
    assert re.search(rf"\b{name}\b", TESTS), f"no test names {name}"
    assert f"#### `{signature(method)}`" in PAGE, (
        f"docs/plugins.md needs a '#### `{signature(method)}`' entry for Task.{name}"
    )


def test_the_page_documents_no_method_the_protocols_lack() -> None:
    """An entry for a method that is gone (or renamed) fails too: the docs follow the code."""
    documented = set(re.findall(r"^#### `(\w+)\(self", PAGE, flags=re.MULTILINE))
    # model_card_data is read by the card; problems() belongs to the options dataclass.
    known = set(protocol_methods()) | {"model_card_data", "problems"}
    assert documented <= known, f"documented but not in nlptasks.task: {documented - known}"
    hooks = set(re.findall(r"^### `(\w+)\(", PAGE, flags=re.MULTILINE))
    assert hooks <= set(hook_specs()), f"documented but not a hook: {hooks - set(hook_specs())}"
