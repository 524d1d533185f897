"""The plugin author's reference (docs/plugins.md) follows the code: every hook the plugin
manager knows and every method of the Task protocols has a docstring, a test, and an entry on
the page with its exact signature (as datasette's test_docs.py does for its hooks). The
page's quick-start plugin is docs/examples/topic_task.py, shown verbatim and run here: a
training run, eval, predict and the conformance kit."""

from __future__ import annotations

import inspect
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest

from nlptasks import task as protocols
from nlptasks.plugins.manager import get_plugin_manager
from nlptasks.testing import TaskConformance, TinyData

ROOT = Path(__file__).resolve().parents[1]
PAGE = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
QUICKSTART = ROOT / "docs" / "examples" / "topic_task.py"
QUICKSTART_RECIPE = ROOT / "docs" / "examples" / "topic.yaml"
QUICKSTART_PLUGIN = "docs.examples.topic_task"  # its import path from the checkout
TESTS = "\n".join(p.read_text(encoding="utf-8") for p in sorted((ROOT / "tests").rglob("*.py")))
TASKS = "\n".join(
    [TESTS, QUICKSTART.read_text(encoding="utf-8")]
    + [
        p.read_text(encoding="utf-8")
        for p in sorted((ROOT / "nlptasks" / "builtins").rglob("*.py"))
    ]
)
PROTOCOLS = (
    protocols.Task,
    protocols.Collates,
    protocols.Generates,
    protocols.Explains,
    protocols.ReadsSources,
    protocols.WritesSamples,
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
    # problems() belongs to the options dataclass (TaskInfo.options), not to the task.
    known = set(protocol_methods()) | {"problems"}
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


# ------------------------------------------------------- the conformance kit in the docs
def test_the_docs_list_every_check_of_the_kit() -> None:
    """docs/plugins.md and CONTRIBUTING.md show the kit's own list of checks (its tests'
    docstrings), every one of them, in order."""
    from nlptasks.testing.conformance import checks, checks_table

    assert [name for name, _ in checks()] == sorted(
        (n for n in vars(TaskConformance) if n.startswith("test_")),
        key=list(vars(TaskConformance)).index,
    )
    assert all(summary for _, summary in checks()), "a check without a docstring"
    table = checks_table()
    for doc in (PAGE, (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")):
        assert table in doc, f"the docs' table of checks must be, as generated:\n{table}"


def _contributing_kit_blocks() -> dict[str, str]:
    """CONTRIBUTING.md's conformance-kit example: file name (its first comment) -> text."""
    doc = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    section = doc.split("### The conformance kit")[1].split("\n### ")[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    return {block.splitlines()[0].removeprefix("# "): block for block in blocks}


def test_contributing_conformance_example_runs(tmp_path: Path) -> None:
    """The kit example CONTRIBUTING.md shows runs as written, every check passing, in the
    plugin `nlptasks plugins new emotion` writes, installed (its entry point on the path)."""
    import os
    import subprocess
    import sys

    from nlptasks.plugins.scaffold import new_plugin
    from nlptasks.testing.conformance import checks
    from tests.venvs import clean_env

    blocks = _contributing_kit_blocks()
    assert set(blocks) == {"tests/conftest.py", "tests/test_emotion.py"}
    root = new_plugin("emotion", "classification", tmp_path)
    for name, text in blocks.items():
        (root / name).write_text(text)
    # Installed as pip would: a dist-info with the entry point, found on the path.
    info = tmp_path / "site" / "nlptasks_emotion-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: nlptasks-emotion\nVersion: 0.1.0\n"
    )
    (info / "entry_points.txt").write_text("[nlptasks]\nemotion = nlptasks_emotion\n")
    path = os.pathsep.join([str(tmp_path / "site"), str(root)])
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_emotion.py"],
        cwd=root,
        capture_output=True,
        text=True,
        env=clean_env(PYTHONPATH=path, NLPTASKS_CACHE=str(tmp_path / "cache")),
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert f"{len(checks())} passed" in done.stdout.strip().splitlines()[-1], done.stdout


def _core_imports() -> dict[str, set[str]]:
    """Each core module (builtins aside) -> the nlptasks modules it imports anywhere in it
    (in functions and under TYPE_CHECKING too)."""
    import ast

    package = ROOT / "nlptasks"
    modules = {}
    for path in package.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for module, path in modules.items():
        if module.startswith("nlptasks.builtins"):
            continue
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names = [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            for name in names:
                while name and name not in modules:  # `from pkg import name` -> pkg
                    name = name.rpartition(".")[0]
                if name and name != module:
                    targets.add(name)
        graph[module] = targets
    return graph


def test_contributing_import_order_is_the_codes() -> None:
    """CONTRIBUTING.md's module layers: every import goes down them, none sideways or up."""
    doc = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    block = _fenced_after(doc, "Imports go one way")
    layers = [[n.strip() for n in layer.split(",")] for layer in block.split("->")]

    def layer(module: str) -> tuple[int, str]:
        found = []
        for i, names in enumerate(layers):
            for name in names:
                dotted = "nlptasks." + name.removesuffix("/__init__")
                exact = name.endswith("/__init__")
                if module == dotted or (not exact and module.startswith(dotted + ".")):
                    found.append((len(dotted), i, name))
        assert found, f"{module} is in no layer of CONTRIBUTING.md's import order"
        _, i, name = max(found)
        return i, name

    graph = _core_imports()
    wrong = []
    for module, targets in sorted(graph.items()):
        if module in ("nlptasks", "nlptasks.__main__"):  # the public API, re-exported
            continue
        here = layer(module)
        for target in sorted(targets):
            if target == "nlptasks":  # only the test kit imports the public API
                ok = module.startswith("nlptasks.testing")
            else:
                there = layer(target)
                ok = there[1] == here[1] or there[0] > here[0]
            if not ok:
                wrong.append(f"{module} -> {target}")
    assert not wrong, f"imports against CONTRIBUTING.md's order: {wrong}"


def test_the_page_documents_the_declaration_and_the_metric_path() -> None:
    """``info`` and the data classes a task builds are on the page with their fields in the
    code's order (``TaskInfo(name, pipeline_tag, ...)``), and every field of ``EvalContext``."""
    import dataclasses

    assert "#### `info: ClassVar[TaskInfo]`" in PAGE
    for cls in (protocols.TaskInfo, protocols.MetricSpec, protocols.Step, protocols.Scores):
        start = PAGE.index(f"`{cls.__name__}(") + 1
        documented = re.findall(r"[(,]\s*(\w+)", PAGE[start : PAGE.index("`", start)])
        assert documented == [f.name for f in dataclasses.fields(cls)], cls.__name__
    for field in dataclasses.fields(protocols.EvalContext):
        assert f"`{field.name}`" in PAGE, f"docs/plugins.md does not name EvalContext.{field.name}"


# ------------------------------------------------------------------ the quick-start plugin
def _fenced_after(text: str, heading: str) -> str:
    """The first fenced block after ``heading``."""
    section = text.split(heading, 1)[1]
    return re.search(r"```\w*\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]


def test_the_quick_start_shows_the_plugin_the_suite_runs() -> None:
    """The page's quick start is the file these tests run, verbatim, and its recipe too; its
    task is under 80 lines, as the page says."""
    source = QUICKSTART.read_text(encoding="utf-8")
    assert _fenced_after(PAGE, "### `docs/examples/topic_task.py`") == source
    recipe = QUICKSTART_RECIPE.read_text(encoding="utf-8")
    assert _fenced_after(PAGE, "### `docs/examples/topic.yaml`") == recipe
    task = source[source.index("class TopicTask") :].strip().splitlines()
    assert len(task) < 80, f"the quick-start task has {len(task)} lines"
    assert f"the task ({len(task)} lines)" in PAGE
    # The conformance test the page shows is the class at the end of this file, exactly.
    blocks = re.findall(r"```python\n(.*?)```", PAGE, re.S)
    [kit] = [block for block in blocks if block.startswith("class TestQuickstart(")]
    assert kit == textwrap.dedent(inspect.getsource(TestQuickstart))
    # Built on the public API alone.
    imported = set(re.findall(r"^(?:from|import) (nlptasks\S*)", source, flags=re.MULTILINE))
    assert imported == {"nlptasks"}, imported


def _quickstart_pyproject() -> dict[str, Any]:
    import tomllib

    return tomllib.loads(_fenced_after(PAGE, "### `nlptasks-topic/pyproject.toml`"))


def test_the_quick_start_pyproject_is_whole() -> None:
    """The page's pyproject.toml is all pip needs: a build system (CONTRIBUTING.md's), the
    project's name, version and dependencies, the entry point, the recipe as package data."""
    import fnmatch

    import tomllib

    pyproject = _quickstart_pyproject()
    contributing = tomllib.loads(_smallest_plugin_blocks()["toml"])
    assert pyproject["build-system"] == contributing["build-system"]
    project = pyproject["project"]
    assert (project["name"], project["version"]) == ("nlptasks-topic", "0.1.0")
    assert project["dependencies"] == ["nlptasks"]
    assert project["entry-points"] == {"nlptasks": {"topic": "nlptasks_topic"}}
    shipped = pyproject["tool"]["setuptools"]["package-data"]["nlptasks_topic"]
    assert any(fnmatch.fnmatch(QUICKSTART_RECIPE.name, pattern) for pattern in shipped)
    # The module's docstring tells the same.
    assert 'entry point ``topic = "nlptasks_topic"``' in QUICKSTART.read_text(encoding="utf-8")


@pytest.mark.slow
def test_the_quick_start_builds_a_wheel(tmp_path: Path) -> None:
    """The page's folder, file for file, builds a wheel holding the plugin, its recipe and
    its entry point."""
    import zipfile

    from tests.venvs import pip

    root = tmp_path / "nlptasks-topic"
    package = root / "nlptasks_topic"
    package.mkdir(parents=True)
    (root / "pyproject.toml").write_text(_fenced_after(PAGE, "### `nlptasks-topic/pyproject.toml`"))
    (package / "__init__.py").write_text(QUICKSTART.read_text(encoding="utf-8"))
    (package / "topic.yaml").write_text(QUICKSTART_RECIPE.read_text(encoding="utf-8"))
    pip("wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(root))
    (wheel,) = tmp_path.glob("nlptasks_topic-0.1.0-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        assert {"nlptasks_topic/__init__.py", "nlptasks_topic/topic.yaml"} <= names
        entry_points = archive.read("nlptasks_topic-0.1.0.dist-info/entry_points.txt").decode()
    assert "[nlptasks]\ntopic = nlptasks_topic" in entry_points


def test_quickstart_trains_evaluates_and_predicts(
    cli: Any, isolated_plugins: Any, tiny_bert: Path, tmp_path: Path
) -> None:
    """The quick-start plugin, loaded as a plugin, trains on its own dataset through its
    recipe; eval, predictions.jsonl and predict agree with one another."""
    import json

    import nlptasks

    isolated_plugins(QUICKSTART_PLUGIN)
    listed = cli("list", "datasets").output
    assert "topic-headlines" in listed
    cli("recipes", "validate", "topic/default")
    run_dir = tmp_path / "run"
    cli(
        "run",
        "topic",
        f"model={tiny_bert}",
        "train.max_steps=6",
        "train.eval_every=3",
        "-o",
        str(run_dir),
        "-q",
    )
    model = run_dir / "model"
    config = json.loads((model / "config.json").read_text())
    assert config["id2label"] == {"0": "business", "1": "science", "2": "sport"}
    assert config["label2id"] == {"business": 0, "science": 1, "sport": 2}

    events = [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines()]
    # 96 headlines, a quarter held out (data.eval_fraction in the recipe).
    assert events[0]["train_examples"] == 72 and events[0]["eval_examples"] == 24
    assert [e["step"] for e in events if e["type"] == "eval"] == [3, 6]

    metrics = json.loads(cli("eval", "topic", "--model", str(model), "--json").stdout)
    assert set(metrics) == {"loss", "accuracy"}
    assert 0.0 <= metrics["accuracy"] <= 1.0 and metrics["loss"] > 0.0
    # One record per eval headline; their statistics add up to the reported accuracy.
    rows = [json.loads(x) for x in (run_dir / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 24 and {r["reference"] for r in rows} <= {"business", "science", "sport"}
    right = sum(r["prediction"] == r["reference"] for r in rows)
    assert sum(r["statistics"]["correct"] for r in rows) == right
    assert metrics["accuracy"] == pytest.approx(right / 24)

    # predict: one answer per record, in input order, the label evaluation gave each text.
    texts = [r["text"] for r in rows]
    predicted = nlptasks.predict("topic", str(model), texts, batch_size=5)
    assert [p["text"] for p in predicted] == texts
    assert [p["topic"] for p in predicted] == [r["prediction"] for r in rows]
    assert all(0.0 < p["score"] <= 1.0 for p in predicted)
    # The CLI gives the same, one JSON line per input.
    lines = cli("predict", "topic", "--model", str(model), texts[0], texts[1]).stdout
    assert [json.loads(x)["topic"] for x in lines.splitlines()] == [
        p["topic"] for p in predicted[:2]
    ]


def test_quickstart_data_problems_are_one_line(
    cli: Any, isolated_plugins: Any, tiny_bert: Path, tmp_path: Path
) -> None:
    """A file without the label column, or with a label the training data lacks, is a
    DataError naming it, not a traceback."""
    isolated_plugins(QUICKSTART_PLUGIN)
    train, other = tmp_path / "train.jsonl", tmp_path / "other.jsonl"
    train.write_text(
        '{"text": "the cup today", "label": "sport"}\n' * 4
        + '{"text": "tax", "label": "business"}\n'
    )
    other.write_text('{"text": "the cell today", "topic": "science"}\n')
    base = [
        "run",
        "topic",
        f"model={tiny_bert}",
        f"data.train_path={train}",
        "-o",
        str(tmp_path / "r"),
    ]
    result = cli(*base, f"data.eval_path={other}", exit_code=1)
    assert "The eval data has no column 'label'." in result.output
    other.write_text('{"text": "the cell today", "label": "science"}\n')
    result = cli(*base, f"data.eval_path={other}", exit_code=1)
    assert "The eval data has labels the model lacks: ['science']." in result.output


class TestQuickstart(TaskConformance):
    """The conformance kit on the quick-start plugin, with its own registered dataset."""

    task = "topic"
    plugin = "docs.examples.topic_task"

    def tiny_data(self, folder: Path) -> TinyData:
        import nlptasks
        from docs.examples.topic_task import headlines

        texts = list(headlines(nlptasks.DataConfig())["text"])
        # Records of different lengths, the longest first: padding must change no answer.
        records = [{"text": "a new report on the telescope and the league"}, {"text": "cup"}]
        return TinyData(overrides=[], texts=texts + [r["text"] for r in records], records=records)
