"""Plugin loading and the registries built from the hooks."""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pluggy
import pytest
from click.testing import CliRunner

import nlptasks
from nlptasks.errors import DuplicateNameError, NlpTasksError, PluginError, UnknownNameError
from nlptasks.plugins import manager as plugins
from nlptasks.plugins.registry import get_registries
from tests.plugins import toy


@pytest.fixture
def toy_plugin() -> Iterator[None]:
    plugins.register_plugin(toy, "toy", distribution="nlptasks-toy")
    toy.EVENTS.clear()
    try:
        yield
    finally:
        plugins.unregister_plugin("toy")


def test_builtin_plugins_register_through_the_same_hooks() -> None:
    regs = get_registries()
    assert regs.tasks.get("sentiment").plugin == "sentiment"
    assert regs.recipes.get("sentiment/minilm").plugin == "sentiment"
    infos = {i.name: i for i in plugins.plugin_infos()}
    assert infos["sentiment"].builtin
    assert "register_tasks" in infos["sentiment"].hooks


def test_unknown_name_suggests() -> None:
    with pytest.raises(UnknownNameError, match="Did you mean 'sentiment'"):
        get_registries().tasks.get("sentimen")


def test_hook_register_tasks(toy_plugin: None) -> None:
    entry = get_registries().tasks.get("toy-task")
    assert entry.plugin == "toy"
    assert entry.load().__name__ == "SentimentTask"


def test_hook_register_models(toy_plugin: None) -> None:
    from nlptasks.models import resolve_model

    assert resolve_model("toy-model") == "/nonexistent/toy-model"
    assert resolve_model("some/hub-id") == "some/hub-id"


def test_hook_register_datasets(toy_plugin: None) -> None:
    from nlptasks.data import load_splits
    from nlptasks.recipes import DataConfig

    splits = load_splits(DataConfig(dataset="toy-reviews", eval_fraction=0.5, split_seed=1))
    assert len(splits["train"]) == 30 and len(splits["eval"]) == 30
    assert splits["train"].column_names == ["review", "label"]


def test_list_metrics_names_each_tasks_declared_metrics(toy_plugin: None) -> None:
    """Metrics are what each task declares (TaskInfo.metrics), listed as TASK/NAME with its
    loss first: two tasks may each have an "accuracy" (toy-task is sentiment's class under
    another name and plugin)."""
    from nlptasks.task import task_info

    result = CliRunner().invoke(cli_group(), ["list", "metrics", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    for entry in get_registries().tasks:
        names = ["loss", *(spec.name for spec in task_info(entry.load()).metrics)]
        listed = [row for row in rows if row["name"].split("/", 1)[0] == entry.name]
        assert [row["name"] for row in listed] == [f"{entry.name}/{n}" for n in names]
        assert {row["plugin"] for row in listed} == {entry.plugin}
    by_name = {row["name"]: row for row in rows}
    assert by_name["sentiment/accuracy"]["plugin"] == "sentiment"
    assert by_name["toy-task/accuracy"]["plugin"] == "toy"
    assert "accuracy" not in by_name
    assert by_name["toy-task/loss"]["description"] == "mean eval loss (lower is better)"
    assert by_name["toy-task/accuracy"]["description"] == "accuracy (higher is better)"


def test_tasks_given_as_one_string_is_one_task() -> None:
    from nlptasks.plugins.registry import Registry, _registrar

    datasets: Registry[object] = Registry("dataset", "nlptasks list datasets")
    _registrar(datasets, "p")("d", "x:y", tasks="sentiment")  # no tuple: one task's name
    assert datasets.get("d").tasks == ("sentiment",)


def test_list_metrics_warns_about_a_task_that_cannot_load(typo_plugin: None) -> None:
    """A task class that cannot be imported is one warning line; the other tasks' metrics
    are still listed."""
    result = CliRunner().invoke(cli_group(), ["list", "metrics", "--json"])
    assert result.exit_code == 0, result.output
    tasks = {row["name"].split("/", 1)[0] for row in json.loads(result.stdout)}
    assert "sentiment" in tasks and not tasks & {"typo-attr", "typo-module"}
    warnings = result.stderr.strip().splitlines()
    assert len(warnings) == 2 and all(w.startswith("Warning: Plugin 'typo'") for w in warnings)


def test_list_without_a_kind_leaves_metrics_out_and_imports_no_torch() -> None:
    """Listing metrics imports the task classes (and torch); listing everything does not."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "nlptasks", "list", "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, "NLPTASKS_LOAD_PLUGINS": ""},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert set(json.loads(done.stdout)) == {"tasks", "recipes", "models", "datasets"}
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()}
    assert "nlptasks" in imported and "torch" not in imported


def test_hook_register_recipes(toy_plugin: None) -> None:
    from nlptasks.recipes import load_recipe

    recipe = load_recipe("toy-task", "toy")
    assert recipe.model == "toy-model" and recipe.data.dataset == "toy-reviews"


def test_hook_register_commands(toy_plugin: None) -> None:
    group = click.Group()
    plugins.get_plugin_manager().hook.register_commands(cli=group)
    result = CliRunner().invoke(group, ["hello", "world"])
    assert result.output == "hello world\n"


def test_hook_on_event(toy_plugin: None, tmp_path: Path) -> None:
    from nlptasks.events import EventLog

    log = EventLog(tmp_path / "events.jsonl")
    log.emit("step", step=1, loss=0.5)
    log.close()
    assert toy.EVENTS[-1]["type"] == "step" and toy.EVENTS[-1]["loss"] == 0.5
    assert json.loads((tmp_path / "events.jsonl").read_text())["step"] == 1


def test_toy_dataset_trains_end_to_end(toy_plugin: None, tiny_bert: Path, tmp_path: Path) -> None:
    from nlptasks.data import load_splits
    from nlptasks.recipes import load_recipe
    from nlptasks.runner import predict, run

    overrides = [
        f"model={tiny_bert}",
        "data.dataset=toy-reviews",
        "~options.label_names",
        "train.max_steps=2",
        "train.batch_size=8",
        "data.eval_fraction=0.2",
    ]
    result = run("sentiment", None, overrides, output_dir=str(tmp_path / "run"))
    assert set(result.metrics) == {"loss", "accuracy", "macro_f1"}
    # Recomputed independently: the saved model's predictions on the held-out split (the
    # split is seeded, so loading it again gives the same rows) against the gold labels.
    held_out = load_splits(load_recipe("sentiment", None, overrides).data)["eval"]
    assert len(held_out) == 12  # 0.2 of the 60 toy reviews
    predicted = predict("sentiment", str(tmp_path / "run/model"), list(held_out["review"]))
    correct = sum(p["label"] == gold for p, gold in zip(predicted, held_out["label"], strict=True))
    assert result.metrics["accuracy"] == pytest.approx(correct / len(held_out), abs=1e-6)
    config = json.loads((tmp_path / "run/model/config.json").read_text())
    assert config["id2label"] == {"0": "neg", "1": "pos"}  # label names from the data
    assert [e["type"] for e in toy.EVENTS][:2] == ["run_start", "train_start"]


def cli_group() -> click.Group:
    from nlptasks.cli import cli

    return cli


def _one_error_line(result: Any) -> str:
    """The CLI's output for a user error: exit code 1 and one 'Error:' line, no traceback."""
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert "Traceback" not in result.output
    return str(lines[0])


@pytest.fixture
def duplicate_plugin() -> Iterator[None]:
    from tests.plugins import duplicate

    plugins.register_plugin(duplicate, "dup-plugin")  # registers task 'sentiment' again
    try:
        yield
    finally:
        plugins.unregister_plugin("dup-plugin")


def test_duplicate_name_fails_only_where_it_is_used(duplicate_plugin: None) -> None:
    regs = get_registries()  # building the registries no longer fails
    with pytest.raises(DuplicateNameError, match="'sentiment'.*'dup-plugin'.*'sentiment'"):
        regs.tasks.get("sentiment")
    assert "sentiment" in regs.tasks and regs.tasks.names().count("sentiment") == 1
    assert regs.recipes.get("sentiment/minilm").plugin == "sentiment"
    runner = CliRunner()
    for args in (["list"], ["list", "tasks"], ["recipes", "list"]):
        assert runner.invoke(cli_group(), args).exit_code == 0, args
    listed = runner.invoke(cli_group(), ["list", "tasks", "--json"])
    rows = [row for row in json.loads(listed.output) if row["name"] == "sentiment"]
    assert [row["plugin"] for row in rows] == ["dup-plugin, sentiment (conflict)"]
    # A command that uses the name fails with one line naming both plugins.
    line = _one_error_line(runner.invoke(cli_group(), ["recipes", "list", "sentiment"]))
    assert "'dup-plugin'" in line and "plugin 'sentiment'" in line


@pytest.fixture
def clashing_plugins() -> Iterator[None]:
    from tests.plugins import clash_a, clash_b

    plugins.register_plugin(clash_a, "clash-a")
    plugins.register_plugin(clash_b, "clash-b")
    try:
        yield
    finally:
        plugins.unregister_plugin("clash-b")
        plugins.unregister_plugin("clash-a")


def test_duplicate_of_another_name_leaves_sentiment_usable(clashing_plugins: None) -> None:
    from nlptasks.models import resolve_model
    from nlptasks.recipes import load_recipe

    regs = get_registries()
    with pytest.raises(DuplicateNameError, match="'clash-model'.*'clash-a'.*'clash-b'"):
        resolve_model("clash-model")
    assert regs.tasks.get("sentiment").load().__name__ == "SentimentTask"
    assert regs.models.get("all-minilm-l6-v2").plugin == "sentiment"
    assert load_recipe("sentiment", "minilm").model == "all-minilm-l6-v2"
    runner = CliRunner()
    shown = runner.invoke(cli_group(), ["recipes", "show", "sentiment/minilm", "--resolved"])
    assert shown.exit_code == 0, shown.output
    models = json.loads(runner.invoke(cli_group(), ["list", "models", "--json"]).output)
    assert {row["name"]: row["plugin"] for row in models} == {
        "all-minilm-l6-v2": "sentiment",
        "smollm2-135m": "generation",
        "gemma3-270m": "generation",
        "clash-model": "clash-a, clash-b (conflict)",
    }


@pytest.fixture
def typo_plugin() -> Iterator[None]:
    from tests.plugins import typo

    plugins.register_plugin(typo, "typo")
    try:
        yield
    finally:
        plugins.unregister_plugin("typo")


@pytest.mark.parametrize(
    ("task", "target", "why"),
    [
        (
            "typo-attr",
            "nlptasks.builtins.sentiment.task:SentimentTsk",
            "module 'nlptasks.builtins.sentiment.task' has no attribute 'SentimentTsk'",
        ),
        (
            "typo-module",
            "nlptasks.builtins.sentimnt.task:SentimentTask",
            "No module named 'nlptasks.builtins.sentimnt'",
        ),
    ],
)
def test_target_typo_is_one_line_naming_the_plugin(
    typo_plugin: None, task: str, target: str, why: str
) -> None:
    expected = (
        f"Error: Plugin 'typo' registered task '{task}' as '{target}', which cannot be "
        f"imported: {why}. Fix the target in the plugin."
    )
    assert _one_error_line(CliRunner().invoke(cli_group(), ["run", task])) == expected
    with pytest.raises(PluginError):
        get_registries().tasks.get(task).load()
    assert get_registries().tasks.get("sentiment").load().__name__ == "SentimentTask"


def test_target_whose_own_import_fails_is_not_called_a_typo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nlptasks.plugins.registry import Entry

    # The module exists but needs a package that is not installed: that is no typo in the
    # target, and the real error (with its traceback) must not be hidden.
    (tmp_path / "needs_missing_dep.py").write_text("import nlptasks_no_such_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    entry = Entry("t", "needs_missing_dep:Task", "p", kind="task")
    with pytest.raises(ModuleNotFoundError, match="nlptasks_no_such_dependency"):
        entry.load()
    sys.modules.pop("needs_missing_dep", None)


def test_model_presets_name_their_hub_id(toy_plugin: None, tmp_path: Path) -> None:
    from nlptasks.models import base_model_id

    models = get_registries().models
    assert models.get("all-minilm-l6-v2").hub_id == "sentence-transformers/all-MiniLM-L6-v2"
    assert base_model_id("all-minilm-l6-v2") == "sentence-transformers/all-MiniLM-L6-v2"
    assert models.get("toy-model").hub_id is None
    assert base_model_id("toy-model") is None  # a preset that declares no hub id
    assert base_model_id(str(tmp_path)) is None  # a local directory is no Hub model
    assert base_model_id("bert-base-uncased") == "bert-base-uncased"
    assert base_model_id("google-bert/bert-base-uncased") == "google-bert/bert-base-uncased"
    assert base_model_id(str(tmp_path / "gone")) is None  # a path, never a Hub id


# Registration order; pluggy calls tryfirst first, then plain ones last-registered-first,
# then trylast, so none of the orders below is the registration order or its reverse.
ORDER_PLUGINS = ("order_tryfirst", "order_plain", "order_trylast", "order_plain_late")
PLUGGY_ORDER = ["order_tryfirst", "order_plain_late", "order_plain", "order_trylast"]


@pytest.fixture
def ordered_plugins() -> Iterator[None]:
    for name in ORDER_PLUGINS:
        plugins.register_plugin(importlib.import_module(f"tests.plugins.{name}"), name)
    try:
        yield
    finally:
        for name in ORDER_PLUGINS:
            plugins.unregister_plugin(name)


def test_call_hook_keeps_pluggys_order(ordered_plugins: None) -> None:
    from nlptasks.events import EventLog

    by_pluggy: dict[str, Any] = {"type": "step"}
    returned = plugins.get_plugin_manager().hook.on_event(event=by_pluggy)
    assert by_pluggy["calls"] == ["wrapper", *PLUGGY_ORDER]  # pluggy runs the wrapper too
    assert returned == PLUGGY_ORDER
    by_us: dict[str, Any] = {"type": "step"}
    pairs = plugins.call_hook("on_event", event=by_us)
    assert pairs == [(name, name) for name in PLUGGY_ORDER]  # (plugin, its result)
    assert by_us["calls"] == PLUGGY_ORDER  # the wrapper is not called as an implementation
    # The event log's trackers, the same order.
    assert EventLog(None).emit("step", step=1)["calls"] == PLUGGY_ORDER


def test_call_hook_per_plugin_arguments_and_skip(ordered_plugins: None) -> None:
    events: dict[str, dict[str, Any]] = {}

    def own_event(plugin_name: str) -> dict[str, Any]:
        return {"event": events.setdefault(plugin_name, {"type": "step"})}

    pairs = plugins.call_hook(
        "on_event", kwargs_for=own_event, skip={"order_plain"}, event={"shared": True}
    )
    assert [name for name, _ in pairs] == [n for n in PLUGGY_ORDER if n != "order_plain"]
    # kwargs_for wins over the shared value; each plugin saw only its own event.
    assert {name: event["calls"] for name, event in events.items()} == {
        name: [name] for name, _ in pairs
    }


class _RaisesOurError:
    @nlptasks.hookimpl
    def on_event(self, event: dict[str, Any]) -> None:
        raise NlpTasksError("a message that already says what to do")


def test_call_hook_lets_our_own_errors_through(toy_plugin: None) -> None:
    plugins.register_plugin(_RaisesOurError(), "ours")
    try:
        with pytest.raises(NlpTasksError, match="already says what to do"):
            plugins.call_hook("on_event", event={"type": "step"})
    finally:
        plugins.unregister_plugin("ours")


def test_trace_goes_to_stderr(
    toy_plugin: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.plugins import faulty

    monkeypatch.setenv("NLPTASKS_TRACE_PLUGINS", "1")
    plugins.register_plugin(faulty, "faulty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            plugins.call_hook("on_event", event={"type": "step"})
    finally:
        plugins.unregister_plugin("faulty")
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    # One line per call, last registered first: hook, plugin, milliseconds, outcome.
    assert len(lines) == 2, err
    assert re.fullmatch(
        r"nlptasks trace: on_event faulty \d+\.\d\d ms raised ConnectionError", lines[0]
    )
    assert re.fullmatch(r"nlptasks trace: on_event toy \d+\.\d\d ms ok", lines[1])


def test_trace_keeps_json_output_clean() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "nlptasks", "list", "tasks", "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, "NLPTASKS_TRACE_PLUGINS": "1"},
    )
    assert out.returncode == 0, out.stderr
    assert [row["name"] for row in json.loads(out.stdout)] == [
        "generation",
        "qa",
        "sentiment",
        "translation",
    ]
    traced = [line for line in out.stderr.splitlines() if line.startswith("nlptasks trace: ")]
    assert any(" register_tasks sentiment " in line and line.endswith(" ok") for line in traced)
    # One line per implementation call: sentiment implements the four register_* hooks.
    hooks = [line.split()[2] for line in traced if line.split()[3] == "sentiment"]
    kinds = ("tasks", "models", "datasets", "recipes")
    assert sorted(hooks) == sorted(f"register_{kind}" for kind in kinds)
    assert all(re.fullmatch(r"nlptasks trace: \w+ \w+ \d+\.\d\d ms ok", line) for line in traced)


def _fake_distribution(root: Path, name: str, module_source: str) -> None:
    """An installed distribution with an `nlptasks` entry point, as pip would leave it."""
    (root / f"{name}.py").write_text(module_source)
    info = root / f"{name}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[nlptasks]\n{name} = {name}\n")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("NLPTASKS_LOAD_PLUGINS", raising=False)
    return tmp_path


def test_entry_point_plugin_loads(site: Path) -> None:
    _fake_distribution(
        site,
        "nlptasks_good",
        (
            "import nlptasks\n@nlptasks.hookimpl\ndef register_models(register):\n"
            "    register('good-model', lambda: '/models/good')\n"
        ),
    )
    plugins.reset()
    assert get_registries().models.get("good-model").plugin == "nlptasks_good"
    info = next(i for i in plugins.plugin_infos() if i.name == "nlptasks_good")
    assert (info.distribution, info.version) == ("nlptasks_good", "1.2.3")


def test_broken_plugin_is_one_warning_and_skipped(site: Path) -> None:
    _fake_distribution(site, "nlptasks_broken", "raise ImportError('no module named foo')\n")
    plugins.reset()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        regs = get_registries()
    assert "sentiment" in regs.tasks  # the rest still works
    messages = [str(w.message) for w in caught if issubclass(w.category, plugins.PluginLoadWarning)]
    assert len(messages) == 1
    assert re.search(r"Plugin 'nlptasks_broken' \(nlptasks_broken 1\.2\.3\) failed", messages[0])
    assert "\n" not in messages[0]
    sys.modules.pop("nlptasks_broken", None)


def test_broken_plugin_cli_still_works(site: Path) -> None:
    import subprocess

    _fake_distribution(site, "nlptasks_broken2", "raise RuntimeError('boom')\n")
    out = subprocess.run(
        [sys.executable, "-m", "nlptasks", "list", "tasks", "--json"],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "PYTHONPATH": str(site)},
    )
    assert out.returncode == 0, out.stderr
    assert "sentiment" in [row["name"] for row in json.loads(out.stdout)]
    warning_lines = [line for line in out.stderr.splitlines() if "nlptasks_broken2" in line]
    assert len(warning_lines) == 1 and warning_lines[0].startswith("Warning: Plugin")


def test_strict_mode_raises(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_distribution(site, "nlptasks_broken3", "raise RuntimeError('boom')\n")
    monkeypatch.setenv("NLPTASKS_STRICT_PLUGINS", "1")
    plugins.reset()
    with pytest.raises(PluginError, match="nlptasks_broken3") as caught:
        get_registries()
    # The warning says the plugin was skipped; in strict mode it was not, the command stopped.
    assert "skipped" not in str(caught.value)
    assert "NLPTASKS_STRICT_PLUGINS" in str(caught.value)


def test_strict_mode_hook_failure_does_not_say_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.plugins import faulty

    monkeypatch.setenv("NLPTASKS_STRICT_PLUGINS", "1")
    plugins.register_plugin(faulty, "faulty", distribution="nlptasks-faulty")
    try:
        with pytest.raises(PluginError, match="failed in hook register_tasks") as caught:
            get_registries()
    finally:
        plugins.unregister_plugin("faulty")
    assert "skipped" not in str(caught.value)
    assert "\n" not in str(caught.value)


def test_allow_list(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_distribution(site, "nlptasks_skipme", "raise RuntimeError('must not load')\n")
    monkeypatch.setenv("NLPTASKS_LOAD_PLUGINS", "")
    plugins.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert "sentiment" in get_registries().tasks


def test_failing_hooks_are_one_warning_each(tmp_path: Path) -> None:
    from nlptasks.events import EventLog
    from tests.plugins import faulty

    plugins.register_plugin(faulty, "faulty", distribution="nlptasks-faulty")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            regs = get_registries()
            plugins.call_hook("register_commands", cli=click.Group())
            log = EventLog(tmp_path / "events.jsonl")
            for step in range(3):
                log.emit("step", step=step)
            log.close()
        assert "sentiment" in regs.tasks
        messages = [str(w.message) for w in caught]
        assert len(messages) == 3, messages  # on_event reported once, then left out
        assert any("hook register_tasks" in m and "nlptasks-faulty" in m for m in messages)
        assert any("hook register_commands" in m for m in messages)
        assert any("hook on_event" in m and "tracker server is down" in m for m in messages)
        assert len((tmp_path / "events.jsonl").read_text().splitlines()) == 3
    finally:
        plugins.unregister_plugin("faulty")


def test_entry_point_cannot_displace_a_loaded_plugin(site: Path) -> None:
    _fake_distribution(
        site,
        "fake_sentiment",
        "import nlptasks\n@nlptasks.hookimpl\ndef register_models(register):\n"
        "    register('fake-model', lambda: '/x')\n",
    )
    info = site / "fake_sentiment-1.2.3.dist-info" / "entry_points.txt"
    info.write_text("[nlptasks]\nsentiment = fake_sentiment\n")  # clashes with the built-in
    plugins.reset()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        regs = get_registries()
    assert "sentiment" in regs.tasks and "fake-model" not in regs.models
    assert any("name is already used by nlptasks" in str(w.message) for w in caught)


def test_register_plugin_with_a_bad_hook_leaves_no_trace() -> None:
    from tests.plugins import misspelled

    pm = plugins.get_plugin_manager()
    before = [info.name for info in plugins.plugin_infos()]
    for _ in range(2):  # twice: a leftover registration would make the second a ValueError
        with pytest.raises(pluggy.PluginValidationError, match="register_taks"):
            plugins.register_plugin(misspelled, "misspelled")
        assert pm.get_plugin("misspelled") is None and not pm.is_registered(misspelled)
    assert [info.name for info in plugins.plugin_infos()] == before
    assert not pm.get_hookcallers(misspelled)
    assert "never" not in get_registries().tasks


def test_plugin_recipe_commands_use_the_registered_task(toy_plugin: None, tmp_path: Path) -> None:
    from nlptasks.cli import cli

    runner = CliRunner()
    shown = runner.invoke(cli, ["recipes", "show", "toy-task/toy", "--resolved"])
    assert shown.exit_code == 0, shown.output
    assert "task: toy-task" in shown.output
    assert runner.invoke(cli, ["recipes", "validate", "toy"]).exit_code == 0
    copied = runner.invoke(cli, ["recipes", "copy", "toy", str(tmp_path / "t.yaml")])
    assert copied.exit_code == 0 and "nlptasks run toy-task" in copied.output


def test_a_target_without_a_colon_is_one_line() -> None:
    from nlptasks.plugins.registry import Entry

    entry = Entry("dotted", "nlptasks.builtins.sentiment.task.SentimentTask", "p", kind="task")
    with pytest.raises(PluginError, match="registered task 'dotted' as .* 'module:attr'"):
        entry.load()


def test_an_ambiguous_recipe_name_says_so(toy_plugin: None, tmp_path: Path) -> None:
    from nlptasks.recipes import locate_recipe

    extra = tmp_path / "minilm.yaml"
    extra.write_text("model: m\n")

    class Another:
        @staticmethod
        @__import__("nlptasks").hookimpl
        def register_recipes(register: object) -> None:
            register("toy-task", "minilm", extra)  # type: ignore[operator]

    plugins.register_plugin(Another, "another")
    try:
        with pytest.raises(
            Exception, match="'minilm' is ambiguous: qa/minilm, sentiment/minilm, toy-task/minilm"
        ):
            locate_recipe("minilm")
        assert locate_recipe("sentiment/minilm")[1] == "sentiment"
    finally:
        plugins.unregister_plugin("another")
