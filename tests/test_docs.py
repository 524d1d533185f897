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
from nlptasks.plugins.manager import get_plugin_manager

ROOT = Path(__file__).resolve().parents[1]
PAGE = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
TESTS = "\n".join(p.read_text(encoding="utf-8") for p in sorted((ROOT / "tests").rglob("*.py")))
TASKS = TESTS + "\n".join(
    p.read_text(encoding="utf-8") for p in sorted((ROOT / "nlptasks" / "builtins").rglob("*.py"))
)
PROTOCOLS = (
    protocols.Task,
    protocols.ReadsExamples,
    protocols.ReadsSources,
    protocols.ScoresExamples,
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


# ------------------------------------------------------------ CONTRIBUTING.md's plugin
def _smallest_plugin_blocks() -> dict[str, str]:
    doc = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    section = doc.split("### The smallest working plugin")[1].split("### A task of your own")[0]
    return {lang: body for lang, body in re.findall(r"```(\w+)\n(.*?)```", section, re.S)}


def test_contributing_smallest_plugin_works(
    cli: Any,
    isolated_plugins: Any,
    tiny_bert: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The plugin CONTRIBUTING.md shows, file for file, trains the built-in sentiment task on
    its own data through its recipe and logs each evaluation; and it is as short as it says."""
    import json
    import sys

    import tomllib

    blocks = _smallest_plugin_blocks()
    module = blocks["python"]
    lines = len(module.strip().splitlines())
    assert lines < 40 and f"the plugin ({lines} lines)" in (ROOT / "CONTRIBUTING.md").read_text()
    pyproject = tomllib.loads(blocks["toml"])
    assert pyproject["project"]["entry-points"]["nlptasks"] == {"sms": "nlptasks_sms"}

    package = tmp_path / "nlptasks-sms" / "nlptasks_sms"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(module)
    (package / "sms-minilm.yaml").write_text(blocks["yaml"])
    rows = [("win a free prize now", "spam"), ("call me when you land", "ham")] * 30
    (package / "sms.tsv").write_text(
        "text\tlabel\n" + "".join(f"{text} {i}\t{label}\n" for i, (text, label) in enumerate(rows))
    )
    monkeypatch.syspath_prepend(str(package.parent))
    monkeypatch.chdir(tmp_path)
    isolated_plugins("nlptasks_sms", builtins=True)
    try:
        cli("recipes", "validate", "sentiment/sms-minilm")
        run_dir = tmp_path / "run"
        cli(
            "run",
            "sentiment",
            "--recipe",
            "sms-minilm",
            f"model={tiny_bert}",
            "train.max_steps=4",
            "train.eval_every=2",
            "-o",
            str(run_dir),
            "-q",
        )
    finally:
        sys.modules.pop("nlptasks_sms", None)
    assert json.loads((run_dir / "model" / "config.json").read_text())["id2label"] == {
        "0": "ham",
        "1": "spam",
    }
    events = [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines()]
    # The minilm recipe it extends holds out 10% of the 60 rows.
    assert events[0]["train_examples"] == 54 and events[0]["eval_examples"] == 6
    evals = [[str(e["step"]), str(e["metrics"]["accuracy"])] for e in events if e["type"] == "eval"]
    logged = [line.split(",") for line in (tmp_path / "evaluations.csv").read_text().splitlines()]
    assert logged == evals and len(evals) == 2
